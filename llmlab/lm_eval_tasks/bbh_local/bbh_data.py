"""BIG-Bench Hard's release files (suzgunmirac/BIG-Bench-Hard bbh/<task>.json: {"examples": [{"input", "target"}]})
as the test split lm-eval's bbh tasks read. Self-contained (datasets only)."""

from __future__ import annotations

import json
from pathlib import Path

import datasets


def bbh(path: str, subset: str, **_) -> datasets.DatasetDict:
    file = Path(path) / f"{subset}.json"
    if not file.is_file():
        raise FileNotFoundError(f"bbh_local: {file} does not exist (the BIG-Bench-Hard release layout: bbh/<task>.json)")
    rows = json.loads(file.read_text(encoding="utf-8"))["examples"]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(
        [{"input": r["input"], "target": str(r["target"])} for r in rows])})
