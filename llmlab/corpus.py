"""Text present on every machine: the docstrings of Python's standard library.

Used as the needle haystack when no directory is given, to train the tiny test tokenizer,
and as a small local text sample wherever a method needs one (e.g. ROME's key covariance).
Deterministic: the same Python version gives the same text.
"""

from __future__ import annotations

import importlib
import inspect
import re
from functools import lru_cache

# Modules with long, prose-like docstrings; imported lazily, missing ones skipped.
STDLIB_MODULES = (
    "argparse", "asyncio", "collections", "contextlib", "csv", "dataclasses", "datetime",
    "decimal", "difflib", "email", "fractions", "functools", "heapq", "http.client",
    "inspect", "itertools", "json", "logging", "mailbox", "os", "pathlib", "pickle",
    "random", "re", "shutil", "socket", "statistics", "string", "subprocess", "tarfile",
    "textwrap", "threading", "typing", "unittest", "urllib.parse", "uuid", "zipfile",
)


@lru_cache(maxsize=1)
def stdlib_docstrings() -> tuple[str, ...]:
    """Paragraph-sized docstrings (module, class and function level), in a fixed order."""
    seen: set[str] = set()
    docs: list[str] = []
    for mod_name in STDLIB_MODULES:
        try:
            module = importlib.import_module(mod_name)
        except Exception:  # pragma: no cover - platform without the module
            continue
        objects = [module] + [obj for _, obj in sorted(vars(module).items()) if inspect.isclass(obj) or inspect.isfunction(obj)]
        for obj in objects:
            if getattr(obj, "__module__", mod_name) not in (mod_name, None) and obj is not module:
                continue
            doc = inspect.getdoc(obj)
            if not doc or len(doc) < 200:
                continue
            doc = re.sub(r"\s+", " ", doc).strip()
            if doc not in seen:
                seen.add(doc)
                docs.append(doc)
    return tuple(docs)


def stdlib_text(min_chars: int = 0) -> str:
    """All docstrings joined as paragraphs (repeated if shorter than `min_chars`)."""
    text = "\n\n".join(stdlib_docstrings())
    while len(text) < min_chars:
        text = text + "\n\n" + text
    return text
