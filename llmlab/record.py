"""results.json / predictions.jsonl: what a job computed and exactly how.

Files are written atomically (temp file + rename), so a job killed half-way leaves no
`results.json` that looks complete. `signature` hashes the parts of the config that change
results (model, method, task, seed, limit, dtype, device); `find_complete` lets a re-run skip
jobs that already have a complete result.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

RESULTS = "results.json"
PREDICTIONS = "predictions.jsonl"
FAILED = "failed.json"
SKIPPED = "skipped.json"  # a job skipped because an earlier complete result has its signature
# the config keys that decide a result; everything else (logger, output paths, hydra) does not
SIGNATURE_KEYS = ("model", "method", "task", "seed", "limit", "dtype", "device")
PACKAGES = ("torch", "transformers", "hydra-core", "omegaconf", "datasets", "trl", "accelerate", "wandb", "gguf")


def signature(config: dict) -> str:
    """A short stable hash of the result-deciding part of a resolved config."""
    keyed = {k: config.get(k) for k in SIGNATURE_KEYS}
    blob = json.dumps(keyed, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600: give the file the mode a plain open() would
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n")


def write_predictions(path: Path, predictions: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(p, ensure_ascii=False, default=_jsonable) + "\n" for p in predictions))


def _jsonable(obj):
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
    except ImportError:  # pragma: no cover
        pass
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def read_results(path: Path) -> dict | None:
    """The parsed results.json, or None when missing, unreadable or not complete."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("status") != "complete":
        return None
    return data


def iter_results(root: Path) -> Iterable[tuple[Path, dict]]:
    """Every complete results.json under `root` (corrupt or partial ones are skipped)."""
    root = Path(root)
    if not root.exists():
        return
    for path in sorted(root.rglob(RESULTS)):
        data = read_results(path)
        if data is not None:
            yield path, data


def iter_reused(root: Path) -> Iterable[tuple[Path, dict, str | None]]:
    """(result path, result, experiment) for every job skipped because an identical result
    existed: the result then belongs to the skipping job's experiment as well (signatures leave
    the experiment name out, so two experiments that run the same config share one result)."""
    root = Path(root)
    if not root.exists():
        return
    for marker in sorted(root.rglob(SKIPPED)):
        try:
            info = json.loads(marker.read_text(encoding="utf-8"))
            path = Path(info["result"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        data = read_results(path)
        if data is not None and data.get("signature") == info.get("signature"):
            yield path, data, info.get("experiment_name")


_HEAD_BYTES = 1024
_HEAD_SIGNATURE = re.compile(r'"signature":\s*"([^"]*)"')


def head_signature(path: Path) -> str | None:
    """The signature a results.json announces in its first bytes ("" when its head does not say).

    `build_results` writes `status` and `signature` first, so a scan over thousands of results
    reads one small block of each instead of parsing every file; a match is then read in full.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(_HEAD_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return None
    match = _HEAD_SIGNATURE.search(head)
    return match.group(1) if match else ""


_HEADS: dict[str, tuple[int, int, str | None]] = {}  # path -> (mtime_ns, size, signature): one read per file per process


def _cached_head_signature(path: Path) -> str | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    hit = _HEADS.get(str(path))
    if hit is not None and hit[:2] == (st.st_mtime_ns, st.st_size):
        return hit[2]
    sig = head_signature(path)
    _HEADS[str(path)] = (st.st_mtime_ns, st.st_size, sig)
    return sig


def find_complete(sig: str, root: Path) -> Path | None:
    """The first complete results.json under `root` whose signature is `sig` (None: none).

    Fast on large outputs trees: only each file's head is read until one announces `sig`;
    that one must then parse as a complete result (a corrupt or partial file never counts).
    """
    root = Path(root)
    if not root.exists():
        return None
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        dirnames[:] = [d for d in dirnames if d != "wandb" and not d.startswith(".")]
        if RESULTS not in filenames:
            continue
        path = Path(dirpath) / RESULTS
        announced = _cached_head_signature(path)
        if announced is None or announced not in ("", sig):
            continue
        data = read_results(path)
        if data is not None and data.get("signature") == sig:
            return path
    return None


@lru_cache(maxsize=1)
def git_sha() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        sha = out.stdout.strip()
        if sha:
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return None


def package_versions() -> dict[str, str | None]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def peak_memory() -> dict[str, float]:
    """Peak resident memory of this process (MiB), and peak CUDA memory when a GPU was used."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_mib = rss / 1024 if sys.platform != "darwin" else rss / 2**20
    out = {"peak_rss_mib": round(rss_mib, 1)}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        out["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def _metric_info(metrics: dict) -> dict:
    """What each recorded metric computes and which direction is better (llmlab.metrics.registry)."""
    from llmlab.metrics.registry import info_for

    return info_for(metrics)


def build_results(*, status: str, sig: str, config: dict, choices: dict, overrides: list[str], out_dir: Path,
                  metrics: dict | None = None, main_metric: str | None = None, info: dict | None = None,
                  extra: dict | None = None, timings: dict | None = None, method: dict | None = None,
                  started: float | None = None, error: str | None = None, runtime: dict | None = None) -> dict:
    return {
        "status": status,
        "signature": sig,
        "experiment_name": config.get("experiment_name"),
        "choices": choices,
        "overrides": overrides,
        "metrics": metrics or {},
        "main_metric": main_metric,
        "metric_info": _metric_info(metrics or {}),
        "info": info or {},
        "extra": extra or {},
        "method_info": method or {},
        "timings_s": {k: round(v, 3) for k, v in (timings or {}).items()},
        "memory": peak_memory(),
        "git_sha": git_sha(),
        "packages": package_versions(),
        "host": platform.node(),
        "runtime": runtime or {},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started or time.time())),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "out_dir": str(out_dir),
        "error": error,
        "config": config,
    }
