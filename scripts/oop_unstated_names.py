"""How many OOP problems test a method (or class) name that their question never states?

    python scripts/oop_unstated_names.py <OOP-eval>/data/oop_data_all.jsonl

Reads the official file unmodified: for each problem, the names its `test_function` calls
(`Class().method(...)` and `obj.method(...)`) that do not occur in the question text, then prints the
count and the list. A model cannot pass such a problem unless it guesses the name."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

CALL = re.compile(r"\b([A-Za-z_]\w*)\s*\(")
ATTRIBUTE_CALL = re.compile(r"\.([A-Za-z_]\w*)\s*\(")
NOT_NAMES = {"def", "return", "test_run", "print", "len", "range", "list", "dict", "set", "int", "str", "float",
             "sorted", "sum", "max", "min", "abs", "super", "isinstance", "tuple", "bool", "append"}


def unstated(row: dict) -> list[str]:
    body = row["test_function"].split(":", 1)[1] if ":" in row["test_function"] else row["test_function"]
    names = set(CALL.findall(body)) | set(ATTRIBUTE_CALL.findall(body))
    names = {n for n in names if n not in NOT_NAMES and not n.startswith("content")}
    return sorted(n for n in names if n not in row["question"])


def main(path: str) -> None:
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    found = [(r["task_id"], unstated(r)) for r in rows]
    found = [(t, names) for t, names in found if names]
    print(f"{len(found)} of {len(rows)} problems test a name their question never states:")
    for task_id, names in found:
        print(f"  {task_id}: {', '.join(names)}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/oop/data/oop_data_all.jsonl")
