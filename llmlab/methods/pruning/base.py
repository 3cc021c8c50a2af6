"""The pruning loop shared by magnitude, Wanda and SparseGPT, as locuslab/wanda lib/prune.py runs it.

Calibration: `nsamples` windows of `seqlen` tokens drawn at random (seed 0) from the calibration text,
one window per forward (`get_c4` in lib/data.py: random document, random start). Then block by block:
hooks on every linear of the block (`find_layers`) gather their input statistics over all windows in
one pass, every linear of the block is pruned, and the block's outputs are recomputed with the pruned
weights to become the next block's inputs (`inps, outs = outs, inps`): each block is calibrated on the
activations of the already-pruned blocks below it. The LM head and embeddings are not pruned.

`report()` gives the sparsity reached per linear and in total (zeros counted) and the seconds per block.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from llmlab.capabilities import WeightTransform
from llmlab.errors import UserError
from llmlab.methods.base import Method
from llmlab.models import anatomy
from llmlab.models.activations import SecondMoment, block_moments, first_block_inputs, propagate


@dataclass
class Pruner(Method, WeightTransform):
    name: ClassVar[str] = "pruner"
    family: ClassVar[str] = "pruning"
    needs_outer: ClassVar[bool] = False   # SparseGPT: the d x d Hessian; Wanda: per-feature norms only
    needs_calibration: ClassVar[bool] = True

    sparsity: float = 0.5                 # main.py --sparsity_ratio (paper: 0.5; also 0.7)
    prune_n: int = 0                      # N:M semi-structured (2:4, 4:8): N of every M consecutive inputs
    prune_m: int = 0
    nsamples: int = 128                   # main.py --nsamples 128
    seqlen: int = 2048                    # model.seqlen in main.py (2048 for LLaMA)
    calibration_path: str | None = None   # a local copy of the source; null: the hub (`text`: Python stdlib docstrings)
    calibration_source: str = "text"      # llmlab.data.calibration.SOURCES (main.py --calibration; C4 in the papers)
    calibration_format: str = "icl"       # zero | single | icl | cot (main.py --input_format concat, --rationale)
    padding_side: str = "left"            # main.py --padding_side left
    seed: int = 0                         # main.py --seed 0
    cache: bool = True                    # reuse the pruned weights of an identical earlier prune
    _facts: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self):
        from llmlab.data.calibration import Calibration

        self.calibration = Calibration(source=self.calibration_source, format=self.calibration_format,
                                       path=self.calibration_path, nsamples=self.nsamples, seqlen=self.seqlen,
                                       seed=self.seed, padding_side=self.padding_side)
        if not 0 <= self.sparsity < 1:
            raise UserError(f"{self.name}: sparsity={self.sparsity} must be in [0, 1).")
        if (self.prune_n or self.prune_m) and not 0 < self.prune_n < self.prune_m:
            raise UserError(f"{self.name}: N:M sparsity needs 0 < prune_n < prune_m (e.g. 2:4); got "
                            f"{self.prune_n}:{self.prune_m}.")

    def check(self) -> None:
        if self.needs_calibration:
            self.calibration.check()

    # -- what each pruner writes --------------------------------------------------------------
    def mask(self, weight: torch.Tensor, stats: SecondMoment | None) -> torch.Tensor:  # pragma: no cover
        """True where the weight is pruned."""
        raise NotImplementedError

    def prune_linear(self, linear: nn.Linear, stats: SecondMoment | None) -> None:
        """Zero the masked weights (SparseGPT also updates the rest)."""
        w = linear.weight.data
        w[self.mask(w.float(), stats)] = 0

    # -- calibration ------------------------------------------------------------------------------
    def calibration_windows(self, lm) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
        """The calibration windows (llmlab.data.calibration) and their attention masks (None: no pads)."""
        from llmlab.data.calibration import windows

        pairs = windows(self.calibration, lm.tokenizer)
        return [ids for ids, _ in pairs], [None if bool(m.all()) else m for _, m in pairs]

    # -- the loop -------------------------------------------------------------------------------------
    def prepare(self, lm, ctx):
        """Prune once per (model, pruner settings, calibration data): the pruned weights are cached by that
        signature (llmlab.training.train_once), so the tasks of one table reuse them; `cache: false` prunes anew."""
        if not self.cache:
            self._facts = {**self.prune(lm), "reused": False}
            return lm
        from llmlab.training import train_once
        from llmlab.training.cache import base_identity

        inputs = {"base": base_identity(lm), "pruner": self.name, "sparsity": self.sparsity,
                  "pattern": [self.prune_n, self.prune_m], "settings": self.settings(),
                  "calibration": self.calibration.identity() if self.needs_calibration else None}
        history, reused, ckpt = train_once(ctx, lm, f"pruned-{self.name}", inputs, lambda: [self.prune(lm)],
                                           use_cache=self.cache)
        self._facts = {**history[0], "reused": reused, "checkpoint": str(ckpt.path)}
        return lm

    def settings(self) -> dict:
        """The pruner's own settings beyond sparsity and calibration (SparseGPT: blocksize, damping)."""
        return {}

    @torch.no_grad()
    def prune(self, lm) -> dict:
        """Prune `lm` in place, block by block; return the facts (sparsity reached, seconds per block)."""
        from llmlab.progress import progress

        started = time.perf_counter()
        model = lm.model
        blocks = anatomy.blocks(model)
        inps = first_block_inputs(model, *self.calibration_windows(lm)) if self.needs_calibration else []
        per_layer, seconds = {}, []
        for b, block in enumerate(progress(blocks, desc=f"{self.name}: pruning", unit="block")):
            t0 = time.perf_counter()
            subset = anatomy.linears(block)
            stats = block_moments(block, subset, inps, self.needs_outer) if self.needs_calibration \
                else {k: None for k in subset}
            for key, linear in subset.items():
                self.prune_linear(linear, stats[key])
                zeros = int((linear.weight == 0).sum())
                per_layer[f"{b}.{key}"] = zeros / linear.weight.numel()
            if self.needs_calibration:  # the next block sees the outputs of this pruned block
                inps = propagate(block, inps)
            seconds.append(time.perf_counter() - t0)
        total_zero = sum(int((m.weight == 0).sum()) for blk in blocks for m in anatomy.linears(blk).values())
        total = sum(m.weight.numel() for blk in blocks for m in anatomy.linears(blk).values())
        return {"family": self.family, "pruner": self.name, "target_sparsity": self.sparsity,
                       "pattern": f"{self.prune_n}:{self.prune_m}" if self.prune_n else "unstructured",
                       "sparsity": total_zero / total, "sparsity_per_layer": per_layer,
                       "seconds_per_block": [round(s, 3) for s in seconds], "seconds": round(time.perf_counter() - started, 2),
                       "calibration": {"source": self.calibration_source, "format": self.calibration_format,
                                       "nsamples": self.nsamples, "seqlen": self.seqlen,
                                       "path": self.calibration_path or ("python stdlib docstrings"
                                                                         if self.calibration_source == "text" else "hub")}}

    def summary(self) -> str | None:
        f = self._facts
        if not f:
            return None
        return (f"{self.name}: {f['sparsity']:.4%} of the blocks' linear weights are zero (target {self.sparsity:.0%}, "
                f"{f['pattern']}), {f['seconds']} s, {sum(f['seconds_per_block']) / max(1, len(f['seconds_per_block'])):.2f} s per block")


def row_mask(metric: torch.Tensor, sparsity: float, prune_n: int, prune_m: int) -> torch.Tensor:
    """Wanda's comparison group: the lowest `int(cols * sparsity)` of each output row (lib/prune.py
    prune_wanda: sort along dim -1), or N of every M consecutive inputs of each row."""
    mask = torch.zeros_like(metric, dtype=torch.bool)
    if prune_n:
        for i in range(0, metric.shape[1], prune_m):
            block = metric[:, i:i + prune_m]
            mask.scatter_(1, i + torch.topk(block, prune_n, dim=1, largest=False)[1], True)
        return mask
    k = int(metric.shape[1] * sparsity)
    idx = torch.sort(metric, dim=-1, stable=True)[1][:, :k]
    return mask.scatter_(1, idx, True)
