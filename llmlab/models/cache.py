"""The llmlab cache directory and atomic directory writes.

A directory is written under a temporary sibling name and renamed into place only when
complete, so a conversion killed half-way leaves nothing that looks complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path


def cache_dir() -> Path:
    path = Path(os.environ.get("LLMLAB_CACHE", Path.home() / ".cache" / "llmlab")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def atomic_dir(final: Path):
    """Yield a temporary directory that becomes `final` on success (and is removed on failure)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    try:
        yield tmp
        (tmp / ".complete").write_text("ok\n")
        if final.exists():  # another process finished first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def is_complete(path: Path) -> bool:
    return (Path(path) / ".complete").exists()
