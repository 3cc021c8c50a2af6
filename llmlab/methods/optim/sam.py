"""SAM (Foret et al. 2021) and ASAM (Kwon et al. 2021), with or without the Fisher mask (FSAM, FASAM).

One step of the family, as the training loop (llmlab.training.finetune) runs it:

    loss.backward()                  # gradient g at w (the loop's first pass)
    opt.perturb(step, lr)            # e(w) = rho * g / ||g||, masked for F-variants; w <- w + e(w)
    loss(w + e(w)).backward()        # second pass (ESAM: on the sharpest examples only)
    opt.restore()                    # w <- w (GSAM: decompose the gradient here)
    clip; opt.step()                 # the base optimizer's update with the second-pass gradient

Defaults follow the release (fairseq-FSAM/optim/samsgd.py) where it works and the paper's equations
where the release is broken; each deviation is named at the field and in conf/method/<name>.yaml:
- the release's `SAM_Mask` never stores `old_p` but inherits SAM.second_step, which restores from
  `old_p`: `sam_type=fisher-sam` raises KeyError on its first update. We restore the saved weights.
- on a mask-refresh step the release computes the mask and then zeroes every gradient
  (`self.model.zero_grad()` in set_fisher_mask) before `first_step`: the perturbation of that step is
  zero, so one update in `mask_interval` is plain Adam. We refresh the mask from the step's gradient
  and then perturb with it, as the paper's algorithm does.
- the base optimizer is torch Adam with `weight_decay` in the release (L2 added to the gradient, not
  the decoupled decay of fairseq's own `adam`, which the AdamW baseline rows use); we use the same
  base for every row (the task's AdamW), so rows differ only in the perturbation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from llmlab.capabilities import Optimization
from llmlab.errors import UserError
from llmlab.methods.base import Method
from llmlab.methods.optim.fisher import FisherMask


@dataclass
class SAM(Method, Optimization):
    name: ClassVar[str] = "sam"
    family: ClassVar[str] = "optim"
    selects_examples: ClassVar[bool] = False   # ESAM: the second pass runs on a subset of the batch
    keeps_first_gradient: ClassVar[bool] = False  # GSAM: the gradient at w is needed after the second pass

    rho: float = 0.05              # samsgd.py FairseqSAMConfig.rho; README "rho in SAM, default=0.05"
    adaptive: bool = False         # ASAM: e(w) = rho * w^2 g / || |w| g || (samsgd.py SAM `adaptive`)
    norm_eps: float = 1e-12        # samsgd.py SAM: grad_norm + 1e-12 (SAM_Mask/ESAM: 1e-7)
    fisher_mask: bool = False      # the F-variants (sam_type fisher-*)
    keep_ratio: float = 0.1        # samsgd.py keep_ratio 0.1: the mask keeps 10 % (sparse ratio 0.9)
    mask_interval: int = 100       # README / scripts --mask-iter-e 100 (the dataclass default 1 is overridden)
    unmasked: tuple = ("bias", "embed")  # SAM_Mask.init_mask: names dropped from the mask (perturbed in full)
    mask_rescale: bool = False     # GSAM_Mask divides the perturbation by keep_ratio; the others do not
    _facts: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self):
        if self.rho < 0:
            raise UserError(f"method {self.name}: rho={self.rho} must be >= 0 (samsgd.py asserts it).")
        if self.fisher_mask and not 0 < self.keep_ratio <= 1:
            raise UserError(f"method {self.name}: keep_ratio={self.keep_ratio} must be in (0, 1] (the share of "
                            f"weights the Fisher mask keeps; the release uses 0.1).")
        if self.mask_interval < 1:
            raise UserError(f"method {self.name}: mask_interval={self.mask_interval} must be >= 1 (updates between "
                            f"Fisher-mask refreshes; the release uses 100).")
        self.unmasked = tuple(self.unmasked)

    def optimizer(self, model, base, seed: int = 0) -> "SharpnessAwareStep":
        """The two-pass optimizer around the task's base optimizer (its param_groups and state); `seed`
        drives the variant's own draws (ESAM's parameter choice)."""
        return SharpnessAwareStep(self, model, base, seed)

    # -- the rule of this variant ---------------------------------------------------------------
    def rho_at(self, lr: float, peak_lr: float) -> float:
        return self.rho

    def chosen(self, named: list[tuple[str, torch.Tensor]], gen: torch.Generator) -> list[tuple[str, torch.Tensor]]:
        """The parameters perturbed this step (ESAM: a random share)."""
        return named

    def scale(self, rho: float, grad_norm: torch.Tensor) -> torch.Tensor:
        scale = rho / (grad_norm + self.norm_eps)
        return scale / self.keep_ratio if (self.fisher_mask and self.mask_rescale) else scale

    def select(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor | None:
        """ESAM: the examples (indices) the second pass runs on, from per-example losses at w and w + e(w)."""
        return None

    def combine(self, opt: "SharpnessAwareStep") -> None:
        """After the second pass: turn the gradients at w + e(w) into the update direction (GSAM)."""

    @property
    def label(self) -> str:
        """FSAM, FASAM, ESAM, ... as the paper names the variant."""
        base = {"esam": "ESAM", "gsam": "GSAM"}.get(self.name, "ASAM" if self.adaptive else "SAM")
        return ("F" if self.fisher_mask else "") + base

    def report(self) -> dict[str, Any]:
        return {"optimizer": self.label, **self._facts} if self._facts else {}

    def summary(self) -> str | None:
        f = self._facts
        if not f:
            return None
        text = f"{self.label}: {f.get('steps', 0)} two-pass steps, rho {f.get('rho_last', self.rho):.3g}"
        if self.fisher_mask:
            text += (f"; Fisher mask refreshed {f.get('mask_refreshes', 0)}x, keeps "
                     f"{100 * (1 - (f.get('mask_sparsity') or 0)):.1f} % of {f.get('masked_weights', 0):,} weights")
        return text


class SharpnessAwareStep:
    """The optimizer a SAM-family method gives the training loop. `two_pass` tells the loop to call
    perturb / (second pass) / restore before `step`; `step` and `zero_grad` are the base optimizer's."""

    two_pass = True

    def __init__(self, method: SAM, model, base: torch.optim.Optimizer, seed: int = 0):
        self.method, self.model, self.base = method, model, base
        self.named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.mask = FisherMask(self.named, method.keep_ratio, method.unmasked) if method.fisher_mask else None
        self.saved: dict[torch.Tensor, torch.Tensor] = {}
        self.old_grad: dict[torch.Tensor, torch.Tensor] = {}
        self.gen = torch.Generator().manual_seed(seed)
        self.steps, self.rho_t = 0, method.rho
        self.selects_examples = method.selects_examples

    @property
    def param_groups(self):
        return self.base.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none=set_to_none)

    @torch.no_grad()
    def grad_norm(self, named, by: str = "grad") -> torch.Tensor:
        norms = []
        for _, p in named:
            g = p.grad if by == "grad" else self.old_grad.get(p)
            if g is None:
                continue
            norms.append(((p.abs() * g) if self.method.adaptive else g).norm(2))
        return torch.stack(norms).norm(2) if norms else torch.zeros(())

    @torch.no_grad()
    def perturb(self, step: int, lr: float) -> None:
        """w <- w + e(w) from the first-pass gradients; refresh the Fisher mask every `mask_interval` updates."""
        m = self.method
        if self.mask is not None and step % m.mask_interval == 0:  # trainer.py: num_updates % mask_iter_e == 0
            self.mask.refresh(self.named)
        self.rho_t = m.rho_at(lr, self.base.param_groups[0].get("initial_lr", lr))  # peak lr: the scheduler's
        named = [(n, p) for n, p in m.chosen(self.named, self.gen) if p.grad is not None]
        scale = m.scale(self.rho_t, self.grad_norm(named))
        self.saved, self.old_grad = {}, {}
        for name, p in named:
            e_w = p.grad * scale.to(p)
            if m.adaptive:
                e_w = e_w * p.pow(2)
            if self.mask is not None:
                e_w = self.mask.apply(name, e_w)
            self.saved[p] = p.detach().clone()
            if m.keeps_first_gradient:
                self.old_grad[p] = p.grad.detach().clone()
            p.add_(e_w)

    @torch.no_grad()
    def restore(self) -> None:
        """w + e(w) -> w (exactly: the saved weights), then the variant's gradient combination."""
        for p, old in self.saved.items():
            p.copy_(old)
        self.method.combine(self)
        self.saved = {}
        self.steps += 1
        facts = {"steps": self.steps, "rho_last": float(self.rho_t)}
        if self.mask is not None:
            facts.update(self.mask.facts())
        self.method._facts.update(facts)

    def select(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor | None:
        """Indices of the examples the second pass uses (None: all)."""
        return self.method.select(before, after)

    def step(self) -> None:
        self.base.step()
