"""GSAM (Zhuang et al., ICLR 2022), as the FSAM release runs it (samsgd.py `GSAM`, `GSAM_Mask`):

- after the second pass, the gradient is decomposed: with g_0 the gradient at w and g the one at
  w + e(w), the part of g_0 orthogonal to g, v = g_0 - cos(g_0, g) ||g_0|| g / ||g||, is subtracted:
  the update direction is g - alpha v (`gradient_decompose`, alpha = 0.4);
- rho follows the learning rate: rho_t = rho_min + (rho_max - rho_min) (lr_t - lr_min) / (lr_max - lr_min)
  with rho 0.01 -> 0.001 (the release's ProportionScheduler arguments). In the release the schedule
  never moves: `update_rho_t` runs once, in the constructor, when its cosine lr scheduler still reports
  its initial value 0, so rho_t is 0.001 for the whole run. We follow the equation (`rho_follows_lr:
  true`); `rho_follows_lr: false` reproduces the release's constant rho_min.
- GSAM_Mask (FGSAM) divides the perturbation by keep_ratio and keeps the embeddings in the mask
  (only "bias" is dropped), conf/method/fgsam.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from llmlab.methods.optim.sam import SAM


@dataclass
class GSAM(SAM):
    name: ClassVar[str] = "gsam"
    keeps_first_gradient: ClassVar[bool] = True

    alpha: float = 0.4             # samsgd.py FairseqSAMConfig.alpha (gsam_alpha)
    rho_max: float = 0.01          # samsgd.py create_optimizer: ProportionScheduler(max_value=0.01, ...)
    rho_min: float = 0.001         # ... min_value=0.001
    rho_follows_lr: bool = True    # false: the release's constant rho_min (its schedule never steps)
    norm_eps: float = 1e-12        # samsgd.py GSAM perturb_eps

    def rho_at(self, lr: float, peak_lr: float) -> float:
        """rho_t from the current and the peak (scheduled) learning rate, lr_min = 0 as the release."""
        if not self.rho_follows_lr:
            return self.rho_min
        share = min(max(lr / peak_lr, 0.0), 1.0) if peak_lr > 0 else 1.0
        return self.rho_min + (self.rho_max - self.rho_min) * share

    @torch.no_grad()
    def combine(self, opt) -> None:
        named = [(n, p) for n, p in opt.named if p.grad is not None and p in opt.old_grad]
        if not named:
            return
        inner = sum(torch.sum(opt.old_grad[p] * p.grad) for _, p in named)
        new_norm, old_norm = opt.grad_norm(named), opt.grad_norm(named, by="old")
        cosine = inner / (new_norm * old_norm + self.norm_eps)
        for _, p in named:
            vertical = opt.old_grad[p] - cosine * old_norm * p.grad / (new_norm + self.norm_eps)
            p.grad.add_(vertical, alpha=-self.alpha)
