"""llmlab: a config-driven experiment runner for LLM-efficiency and knowledge-editing papers."""

__version__ = "0.1.0"


def _register_resolvers() -> None:
    """`${fixture:name}` in a config: the path of a small generated data file (llmlab.fixtures)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("fixture"):
        from llmlab.fixtures import fixture_path

        OmegaConf.register_new_resolver("fixture", fixture_path)


_register_resolvers()
