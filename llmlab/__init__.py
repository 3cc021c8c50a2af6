"""llmlab: a config-driven experiment runner for LLM-efficiency and knowledge-editing papers."""

__version__ = "0.1.0"
