"""Where llmlab's own files are: the config tree (conf/) next to the package."""

from pathlib import Path

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
