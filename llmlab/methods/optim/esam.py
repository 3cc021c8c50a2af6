"""ESAM (Du et al., ICLR 2022), as the FSAM release runs it (samsgd.py `ESAM`, `ESAM_Mask`):

- stochastic weight perturbation: each step a random share `beta` of the parameter tensors is
  perturbed, with e(w) = rho / beta * g / ||g|| (the norm over the chosen tensors). The release does it
  by setting `requires_grad=False` on each tensor with probability 1 - beta after an update, so the
  next step's first pass gives it no gradient (and no perturbation); we draw the same choice at the
  start of each step, from a seeded generator (the release's first step perturbs every tensor);
- sharpness-aware data selection: per-example losses at w and at w + e(w) (a no-grad forward); the
  second pass's gradient uses only the examples whose loss rose most: the top int(n x gamma) by
  sharpness, ties at the cutoff included (`indices = instance_sharpness >= cutoff`), all examples
  when gamma >= 0.99 or when the cutoff cannot be taken (int(n x gamma) = 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from llmlab.errors import UserError
from llmlab.methods.optim.sam import SAM


@dataclass
class ESAM(SAM):
    name: ClassVar[str] = "esam"
    selects_examples: ClassVar[bool] = True

    beta: float = 0.5          # README "beta in esam, default=0.5": share of parameter tensors perturbed
    gamma: float = 0.5         # README "gamma in esam, default=0.5": share of examples in the second pass
    norm_eps: float = 1e-7     # samsgd.py ESAM.first_step: grad_norm + 1e-7

    def __post_init__(self):
        super().__post_init__()
        for k in ("beta", "gamma"):
            if not 0 < getattr(self, k) <= 1:
                raise UserError(f"method {self.name}: {k}={getattr(self, k)} must be in (0, 1] (README: default 0.5).")

    def chosen(self, named, gen):
        keep = torch.rand(len(named), generator=gen) <= self.beta
        return [np for np, k in zip(named, keep.tolist()) if k]

    def scale(self, rho, grad_norm):
        return super().scale(rho, grad_norm) / self.beta

    def select(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor | None:
        sharpness = after - before
        n = sharpness.shape[0]
        position = int(n * self.gamma)
        if self.gamma >= 0.99 or position == 0:
            return None
        cutoff = torch.topk(sharpness, position).values[-1]
        return torch.nonzero(sharpness >= cutoff).flatten()
