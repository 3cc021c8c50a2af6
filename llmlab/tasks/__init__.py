"""Benchmarks. A task is registered by its YAML file in conf/task/ (its `_target_`)."""
