"""Magnitude pruning (locuslab/wanda lib/prune.py prune_magnitude): |W| against one threshold per
layer, `thresh = sort(|W|.flatten())[int(numel * sparsity)]`, pruned where |W| <= thresh (as released:
the `<=` takes the threshold element too, one weight more than the target); N:M per row groups."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from llmlab.methods.pruning.base import Pruner, row_mask


@dataclass
class Magnitude(Pruner):
    name: ClassVar[str] = "magnitude"
    needs_calibration: ClassVar[bool] = False

    def mask(self, weight, stats):
        metric = weight.abs()
        if self.prune_n:
            return row_mask(metric, self.sparsity, self.prune_n, self.prune_m)
        thresh = torch.sort(metric.flatten())[0][int(metric.numel() * self.sparsity)]
        return metric <= thresh
