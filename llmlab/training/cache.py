"""Trained checkpoints cached by signature.

A checkpoint lives in `cache_dir()/trained/<name>-<signature>/` and holds the model's weights
(`model.safetensors`, shared tensors handled), the training history (`history.json`) and the
signature's inputs (`signature.json`). It is written with `atomic_dir`, so a run killed while
saving leaves nothing that looks complete. The signature covers everything that changes the
weights: the base model's spec, the data (its content hash), the settings, the seed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from llmlab.models.cache import atomic_dir, cache_dir, is_complete

log = logging.getLogger(__name__)


def signature(obj: Any, n: int = 16) -> str:
    """A short stable hash of a JSON-serializable object (dict keys sorted)."""
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


def file_digest(paths) -> str:
    """A digest of the files' bytes (training data as part of a signature)."""
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(str(p)).read_bytes())
    return h.hexdigest()[:16]


def base_identity(lm) -> dict:
    """What identifies the starting weights: the model spec (minus runtime-only keys) and dtype."""
    spec = {k: v for k, v in dict(lm.spec or {}).items() if k not in ("max_length", "device_map", "kv_pooling")}
    return {"name": lm.name, "spec": spec, "dtype": str(next(lm.model.parameters()).dtype)}


class TrainedCheckpoint:
    """`cache_dir()/trained/<name>-<sig>`: exists() / load_into(lm) / save(lm, history, inputs)."""

    def __init__(self, name: str, inputs: dict, root: Path | None = None):
        self.inputs = inputs
        self.sig = signature(inputs)
        self.path = Path(root or cache_dir() / "trained") / f"{name}-{self.sig}"

    def exists(self) -> bool:
        return is_complete(self.path)

    def load_into(self, lm) -> list[dict]:
        """Load the cached weights into `lm.model` (in place); return the training history."""
        from safetensors.torch import load_model

        missing, unexpected = load_model(lm.model, str(self.path / "model.safetensors"), strict=False,
                                         device=str(lm.device))
        if unexpected or [m for m in missing if not _tied(lm.model, m)]:
            raise RuntimeError(f"cached checkpoint {self.path} does not match the model "
                               f"(missing {missing[:3]}, unexpected {unexpected[:3]}); delete it and rerun.")
        lm.model.eval()
        return json.loads((self.path / "history.json").read_text())

    def save(self, lm, history: list[dict]) -> Path:
        from safetensors.torch import save_model

        from llmlab.distributed import is_main

        if not is_main():  # under accelerate/torchrun one process writes the checkpoint
            return self.path
        with atomic_dir(self.path) as tmp:
            save_model(lm.model, str(tmp / "model.safetensors"))
            (tmp / "history.json").write_text(json.dumps(history, indent=1, default=float))
            (tmp / "signature.json").write_text(json.dumps(self.inputs, indent=1, ensure_ascii=False, default=str))
        return self.path


def _tied(model, name: str) -> bool:
    """True when `name` is a tied weight (e.g. lm_head tied to the embeddings), restored by tying."""
    tied = getattr(model, "_tied_weights_keys", None) or {}
    keys = tied.keys() if isinstance(tied, dict) else tied
    return any(name == k or name.endswith(k) for k in keys) or (
        name.endswith("lm_head.weight") and getattr(model.config, "tie_word_embeddings", False))


def train_once(ctx, lm, name: str, inputs: dict, train, use_cache: bool = True) -> tuple[list[dict], bool, TrainedCheckpoint]:
    """Train once, cache by signature, reuse: load the checkpoint `name` with these `inputs` into `lm`
    when it exists (and `use_cache`), else run `train()` (which changes `lm` in place and returns its
    log history) and save it. Returns (history, reused, checkpoint); times `<name>_load` / `<name>_train`."""
    ckpt = TrainedCheckpoint(name, inputs)
    if use_cache and ckpt.exists():
        with ctx.timer(f"{name}_load"):
            history = ckpt.load_into(lm)
        print(f"[llmlab] {name}: reusing the trained checkpoint {ckpt.path}", flush=True)
        return history, True, ckpt
    with ctx.timer(f"{name}_train"):
        history = train()
    if use_cache:
        ckpt.save(lm, history)
    return history, False, ckpt
