"""One-sentence-per-line text files (parallel test sets, training sides, monolingual text), as the MT tasks and the
translation-training methods read them: the lines without the final newline."""

from __future__ import annotations

from pathlib import Path


def read_lines(path, limit: int | None = None) -> list[str]:
    """The lines of `path` (UTF-8), the first `limit` of them when given."""
    lines = Path(str(path)).read_text(encoding="utf-8").rstrip("\n").split("\n")
    return lines[:limit] if limit else lines
