"""SparseGPT (Frantar & Alistarh 2023; locuslab/wanda lib/sparsegpt.py, from IST-DASLab/sparsegpt):
H = 2/n * sum X^T X over the calibration samples; dead inputs (H_jj = 0) get H_jj = 1 and W_:j = 0;
dampening 1 % of mean(diag H); Hinv = the upper Cholesky factor of H^-1. Columns are processed in
blocks of 128: the mask of each block is chosen over the whole block at once (`W^2 / diag(Hinv)^2 <=`
its `int(numel * sparsity)`-th value, so one weight more than the target per block, as released) or N
of every M columns per row, then each column is zeroed where masked and its error spread over the
remaining columns (the OBS update), and the block's error onto the columns after it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from llmlab.methods.pruning.base import Pruner


@dataclass
class SparseGPT(Pruner):
    name: ClassVar[str] = "sparsegpt"
    needs_outer: ClassVar[bool] = True
    blocksize: int = 128      # lib/sparsegpt.py fasterprune(blocksize=128)
    percdamp: float = 0.01    # lib/sparsegpt.py fasterprune(percdamp=.01)

    def settings(self) -> dict:
        return {"blocksize": self.blocksize, "percdamp": self.percdamp}

    def prune_linear(self, linear, stats):
        W = linear.weight.data.clone().float()
        Hinv = stats.inverse_hessian_cholesky(W, self.percdamp)  # the running 2/n-scaled sum of X X^T, damped

        def block_mask(W1, Hinv1):
            if self.prune_n:
                return torch.zeros_like(W1, dtype=torch.bool)
            tmp = W1 ** 2 / (torch.diag(Hinv1).reshape(1, -1)) ** 2
            thresh = torch.sort(tmp.flatten())[0][int(tmp.numel() * self.sparsity)]
            return tmp <= thresh

        def pruned(i, w, W1, Hinv1, mask1):
            if self.prune_n and i % self.prune_m == 0:
                tmp = W1[:, i:i + self.prune_m] ** 2 / (torch.diag(Hinv1)[i:i + self.prune_m].reshape(1, -1)) ** 2
                mask1.scatter_(1, i + torch.topk(tmp, self.prune_n, dim=1, largest=False)[1], True)
            q = w.clone()
            q[mask1[:, i]] = 0
            return q

        obs_sweep(W, Hinv, self.blocksize, pruned, block_mask)
        linear.weight.data.copy_(W.to(linear.weight.dtype))


def obs_sweep(W: torch.Tensor, Hinv: torch.Tensor, blocksize: int, column, block=None) -> None:
    """The lazy-batch column sweep SparseGPT and GPTQ share (in place on W): columns in blocks of `blocksize`;
    `block(W1, Hinv1)` prepares a block's state (SparseGPT: its mask); each column w becomes
    `column(i, w, W1, Hinv1, state)` (pruned or rounded), its error scaled by 1/[H⁻¹]_ii is pushed onto the
    block's later columns, and the block's errors onto the columns after the block."""
    cols = W.shape[1]
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        W1, Hinv1 = W[:, i1:i2].clone(), Hinv[i1:i2, i1:i2]
        Q1, Err1 = torch.zeros_like(W1), torch.zeros_like(W1)
        state = block(W1, Hinv1) if block is not None else None
        for i in range(i2 - i1):
            w, d = W1[:, i], Hinv1[i, i]
            q = column(i, w, W1, Hinv1, state)
            Q1[:, i] = q
            err = (w - q) / d
            W1[:, i:] -= err.unsqueeze(1) @ Hinv1[i, i:].unsqueeze(0)
            Err1[:, i] = err
        W[:, i1:i2] = Q1
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
