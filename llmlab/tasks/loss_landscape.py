"""PTvsRI's loss-landscape probe (analysis/lls.py, `get_loss_landscape_with_aux_model`): the loss on a 2-D grid
of weights around the trained model θ*, along

    d1 = θ* - θ_init                      (the training direction)
    d2 = θ_other - θ_init, rescaled per column to d1's norms (`normalize_filter`: norms over dim 0)

both with the 1-D parameters (biases, layer norms) and the embeddings / output projection zeroed (`ignore_bn`,
kws embed_tokens, embed_positions, output_projection), at θ(x, y) = θ* + (x - 1) d1 + y d2 for x, y on
linspace(-span, span, points): θ* sits at (1, 0) and θ_init at (0, 0). The release takes θ_init = the pre-trained
mBART for RI too, and θ_other = the other system (PT for RI); the method supplies both (TrainingEndpoints).
The loss is the criterion's per-token loss in bits (label-smoothed as configured; the release uses each
checkpoint's own criterion) on the validation set (the release: up to 512 batches of 2048 tokens; span 3,
61 x 61 points).

The grid unit is ‖d1‖ in weight space, which differs between systems (`info.direction_norms` records it);
`direction_norm` (not the release's) rescales both directions to one norm, so that systems compare at equal
weight-space distances.

Writes `loss_landscape.png` (contours, θ* and θ_init marked) and `loss_landscape.json` (the grid) beside
results.json. `lls_sharpness`: the mean rise of the loss over the grid points within distance 1 of θ*
(a number for the table; the paper only shows the surfaces).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from llmlab.capabilities import TrainingEndpoints
from llmlab.errors import UserError
from llmlab.metrics.registry import register
from llmlab.models import nmt
from llmlab.tasks.base import Scores
from llmlab.data.parallel import read_lines
from llmlab.tasks.nmt_probe import Probe

register("lls_loss", "loss of the trained model on the probe's validation sentences (bits per target token, "
         "label-smoothed as the task says)", higher_is_better=False, unit="bits")
register("lls_sharpness", "mean rise of the loss (bits per token) over the loss-landscape grid points within "
         "distance 1 of the trained model (directions: training, and the other system; PTvsRI analysis/lls.py)",
         higher_is_better=None, unit="bits")

SKIPPED = ("embed_tokens", "embed_positions", "shared", "lm_head", "output_projection")


def _norm(d: dict) -> float:
    return float(sum(float((v.double() ** 2).sum()) for v in d.values())) ** 0.5


def directions(final: dict, init: dict, other: dict) -> tuple[dict, dict]:
    """(d1, d2) as analysis/lls.py `create_bases_v2`: d1 = final - init, d2 = other - init rescaled to d1's
    column norms, 1-D and embedding parameters zeroed."""
    d1, d2 = {}, {}
    for k, w in final.items():
        if not w.is_floating_point():
            continue
        if w.ndim < 2 or any(s in k for s in SKIPPED):
            d1[k] = d2[k] = torch.zeros_like(w, dtype=torch.float32)
            continue
        a = (w - init[k]).float()
        b = (other[k] - init[k]).float()
        d1[k] = a
        d2[k] = torch.linalg.vector_norm(a, dim=0, keepdim=True) / (
            torch.linalg.vector_norm(b, dim=0, keepdim=True) + 1e-7) * b
    return d1, d2


@dataclass
class LossLandscape(Probe):
    name: ClassVar[str] = "loss_landscape"
    requires: ClassVar[type | None] = TrainingEndpoints
    reference_ok: ClassVar[bool] = False
    unit: ClassVar[str] = "grid point"
    limit_means: ClassVar[str] = "the first N validation sentences"
    main_metric: ClassVar[str] = "lls_sharpness"

    span: float = 3.0                  # lls.py: scale = 3.0
    points: int = 61                   # lls.py: n = 61 per axis
    label_smoothing: float = 0.1
    batch_size: int = 64
    direction_norm: float | None = None   # not the release: rescale d1 and d2 to this norm (equal weight-space units)

    def check_data(self) -> None:
        super().check_data()
        if self.points < 3 or self.points % 2 == 0:
            raise UserError(f"task {self.name}: points={self.points} must be odd and at least 3, so that the grid "
                            f"has a centre line.")

    def grid(self) -> np.ndarray:
        return np.linspace(-self.span, self.span, self.points)

    @torch.no_grad()
    def evaluate(self, lm, method, ctx) -> Scores:
        from llmlab.progress import progress

        src, ref = read_lines(self.source), read_lines(self.reference)
        n = int(ctx.limit) if ctx.limit else len(src)
        src, ref = src[:n], ref[:n]
        points = method.landscape_points()
        final = {k: v.detach().clone() for k, v in lm.model.state_dict().items()}
        d1, d2 = directions(final, points["init"], points["other"])
        norms = {"d1": _norm(d1), "d2": _norm(d2)}
        if self.direction_norm:
            d1 = {k: v * (self.direction_norm / max(norms["d1"], 1e-12)) for k, v in d1.items()}
            d2 = {k: v * (self.direction_norm / max(norms["d2"], 1e-12)) for k, v in d2.items()}
        xs = self.grid()
        loss = np.zeros((len(xs), len(xs)))
        cells = [(i, j) for j in range(len(xs)) for i in range(len(xs))]
        try:
            for i, j in progress(cells, desc=self.name, unit="point"):
                x, y = xs[i], xs[j]
                state = {k: (v + (x - 1.0) * d1[k].to(v.dtype) + y * d2[k].to(v.dtype)) if k in d1 else v
                         for k, v in final.items()}
                lm.model.load_state_dict(state)
                loss[j, i] = nmt.loss_bits(lm, src, ref, self.src, self.tgt, self.label_smoothing, self.batch_size)
        finally:
            lm.model.load_state_dict(final)
        at_final = nmt.loss_bits(lm, src, ref, self.src, self.tgt, self.label_smoothing, self.batch_size)
        X, Y = np.meshgrid(xs, xs)
        near = ((X - 1.0) ** 2 + Y ** 2 <= 1.0 + 1e-9) & ~((np.abs(X - 1.0) < 1e-9) & (np.abs(Y) < 1e-9))
        metrics = {"lls_loss": at_final, "lls_sharpness": float(loss[near].mean() - at_final)}
        ctx.path("loss_landscape.json").write_text(json.dumps(
            {"x": xs.tolist(), "y": xs.tolist(), "loss_bits": loss.tolist(), "final": [1.0, 0.0], "init": [0.0, 0.0],
             "label_smoothing": self.label_smoothing, "sentences": n}, indent=1))
        self._plot(ctx, xs, loss, getattr(method, "name", "none"), lm.name)
        info = {"limit_means": self.limit_means, "items": n, "span": self.span, "points": self.points,
                "direction_norms": norms, "direction_norm": self.direction_norm,
                "label_smoothing": self.label_smoothing, "grid_min_bits": float(loss.min()),
                "grid_max_bits": float(loss.max())}
        return Scores(metrics=metrics, predictions=[], main_metric=self.main_metric, info=info)

    def _plot(self, ctx, xs, loss, method: str, model: str) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(4.8, 4.2))
        levels = np.linspace(loss.min(), min(loss.max(), loss.min() + 12.0), 16)
        cs = ax.contourf(xs, xs, np.minimum(loss, levels[-1]), levels=levels, cmap="coolwarm")
        fig.colorbar(cs, ax=ax, label="loss (bits/token)")
        ax.plot([1.0], [0.0], "k*", ms=10, label="trained (θ*)")
        if self.direction_norm:   # the directions are rescaled: (0, 0) is no longer the init
            ax.set_xlabel(f"training direction, rescaled to norm {self.direction_norm:g}")
        else:
            ax.plot([0.0], [0.0], "ko", ms=5, label="init")
            ax.set_xlabel("training direction θ* − θ_init")
        ax.set_ylabel("other system's direction (filter-normalised)")
        ax.set_title(f"loss landscape: {method} ({model})", fontsize=9)
        ax.legend(fontsize=7, loc="lower left")
        fig.tight_layout()
        path = ctx.path("loss_landscape.png")
        fig.savefig(path, dpi=120)
        plt.close(fig)
        ctx.add_artifact(path)
