"""Method plugins. A method is registered by its YAML file in conf/method/ (its `_target_`)."""
