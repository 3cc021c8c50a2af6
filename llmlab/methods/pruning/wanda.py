"""Wanda (Sun et al. 2024; locuslab/wanda lib/prune.py prune_wanda, lib/layerwrapper.py WrappedGPT):
score |W_ij| * ||X_j||_2 with ||X_j||^2 the running mean over calibration samples of each sample's sum of
squares over its tokens (`scaler_row`), compared within each output row (the lowest int(cols * sparsity)
per row are pruned: exact sparsity), or N of every M consecutive inputs per row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from llmlab.methods.pruning.base import Pruner, row_mask


@dataclass
class Wanda(Pruner):
    name: ClassVar[str] = "wanda"

    def mask(self, weight, stats):
        scaler_row = (stats.sum_sq / max(stats.samples, 1)).to(weight.dtype)  # layerwrapper.add_batch
        metric = weight.abs() * torch.sqrt(scaler_row.reshape(1, -1))
        return row_mask(metric, self.sparsity, self.prune_n, self.prune_m)
