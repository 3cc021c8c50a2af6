"""The Fisher mask of FSAM: which weights the SAM perturbation may move.

As the release computes it (samsgd.py `SAM_Mask.init_mask` / `set_fisher_mask`):
- the masked parameters are every parameter whose name contains none of `unmasked` (the release
  drops names containing "bias" and "embed", GSAM_Mask only "bias"); a parameter outside the mask is
  perturbed in full, as in the release;
- the Fisher information of a weight is the square of its gradient on the current mini-batch (the
  release squares the batch gradient `param.grad` at the refresh step; the per-example empirical
  Fisher of the paper's definition would square per-example gradients first);
- the mask keeps the `keep_ratio` share (int(N x keep_ratio), the release's `keep_num`) of the masked
  weights with the largest Fisher value, ranked over all masked parameters together.
"""

from __future__ import annotations

import torch


class FisherMask:
    def __init__(self, named_params, keep_ratio: float, unmasked: tuple[str, ...]):
        if not 0 < keep_ratio <= 1:
            raise ValueError(f"keep_ratio must be in (0, 1]; got {keep_ratio}")
        self.keep_ratio = keep_ratio
        self.names = [n for n, p in named_params if p.requires_grad and not any(u in n for u in unmasked)]
        self.mask: dict[str, torch.Tensor] = {}
        self.refreshes = 0

    def refresh(self, named_params) -> None:
        """Recompute the mask from the parameters' current gradients (squared)."""
        params = dict(named_params)
        names = [n for n in self.names if params[n].grad is not None]
        if not names:
            return
        fisher = torch.cat([params[n].grad.detach().float().pow(2).flatten() for n in names])
        keep = int(fisher.numel() * self.keep_ratio)
        flat = torch.zeros_like(fisher, dtype=torch.bool)
        if keep:
            flat[torch.topk(fisher, keep, sorted=False).indices] = True
        start = 0
        self.mask = {}
        for n in names:
            size = params[n].numel()
            self.mask[n] = flat[start:start + size].view_as(params[n])
            start += size
        self.refreshes += 1

    def apply(self, name: str, e_w: torch.Tensor) -> torch.Tensor:
        m = self.mask.get(name)
        return e_w if m is None else e_w * m

    def facts(self) -> dict:
        total = sum(m.numel() for m in self.mask.values())
        kept = sum(int(m.sum()) for m in self.mask.values())
        return {"mask_refreshes": self.refreshes, "masked_weights": total, "mask_kept": kept,
                "mask_sparsity": 1 - kept / total if total else None}
