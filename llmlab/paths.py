"""Where llmlab's own files are (the config tree, conf/, next to the package), and whether the hub may be asked."""

import os
from pathlib import Path

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def hub_offline() -> list[str]:
    """The environment variables that keep the Hugging Face hub off (llmlab sets both by default); empty: online."""
    return [v for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE") if os.environ.get(v, "0").lower() in ("1", "true", "yes")]
