"""ROME (Meng et al., 2022, "Locating and Editing Factual Associations in GPT"): a rank-one
update of one MLP down-projection per fact.

Per request (applied one after another, as rome_main.apply_rome_to_model):
  k̄   = down_proj input at the subject's last token, averaged over context templates (compute_u.py)
  u   = C⁻¹k̄ / |C⁻¹k̄|   (C = E[k kᵀ] over a text sample when mom2_adjustment, else I)
  v*  = W k + δ, δ optimized so the model emits the new target (compute_v.py)
  ΔW  = (v* − W k) uᵀ / (k·u)     with k the key of the plain edit prompt
so that the edited layer maps k to v* while changing its answers to other keys as little as
possible. Works on llama-, qwen2- and gemma3-style MLPs (`mlp.down_proj`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from llmlab.methods.editing import _rank_update as ru
from llmlab.methods.editing.base import EditRequest

DEFAULT_LAYER_FRACTION = 5 / 32  # EasyEdit hparams/ROME/llama-7b.yaml: layers [5] of Llama-2-7B's 32


def default_layers(depth: int) -> list[int]:
    """The paper's llama-7b layer at the same relative depth: smollm2-135m (30 layers) -> [5],
    gemma3-270m (18) -> [3], a 4-layer tiny model -> [1]."""
    return [min(depth - 1, round(DEFAULT_LAYER_FRACTION * depth))]


@dataclass
class ROME(ru.KeyValueEditor):
    name: ClassVar[str] = "rome"
    default_layers = staticmethod(default_layers)

    mom2_adjustment: bool = False  # EasyEdit llama-7b: false (the GPT-2/GPT-J paper runs: true)
    context_template_length_params: list = field(default_factory=lambda: [[5, 10], [10, 10]])

    def __post_init__(self):
        super().__post_init__()
        self.last_edit: list[dict] = []

    def apply_edits(self, lm, requests: list[EditRequest], layers: list[int] | None = None) -> None:
        """Write `requests` into the weights in place (no restore; `edit` restores)."""
        layers = layers or self.resolved_layers(lm)
        flat = [x for g in self.templates(lm) for x in g]  # ROME averages over all templates alike
        cov_inv = {}
        if self.mom2_adjustment:
            cov_inv = {layer: torch.inverse(c.double()).float() for layer, c in self.key_moments(lm, layers).items()}
        hp = self.value_settings()
        self.last_edit = []
        for request in requests:
            for layer in layers:  # rome_main.execute_rome: each layer in turn
                proj = ru.down_proj(lm.model, layer)
                info = {"layer": layer, "target_new": request.target_new}
                key_mean = ru.mean_key(lm, layer, [flat], request.prompt, request.subject)
                v_init, delta = ru.optimize_value(lm, proj, request, flat, hp, stats=info)
                plain = ru.template_prompts(lm.tokenizer, ["{}"], request.prompt, request.subject)
                key, out = ru.io_at(lm, proj, plain)
                residual = v_init + delta - out[0]
                upd = ru.rome_update(residual, key[0], key_mean, cov_inv.get(layer))
                with torch.no_grad():
                    proj.weight.add_(upd.to(proj.weight.dtype))
                info["delta_norm"] = float(residual.norm())
                info["update_norm"] = float(upd.norm())
                self.last_edit.append(info)
        self._stats["last_edit"] = self.last_edit
