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

import time
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from llmlab.methods.editing import _rank_update as ru
from llmlab.methods.editing.base import EditRequest, WeightEditor


DEFAULT_LAYER_FRACTION = 5 / 32  # EasyEdit hparams/ROME/llama-7b.yaml: layers [5] of Llama-2-7B's 32


def default_layers(depth: int) -> list[int]:
    """The paper's llama-7b layer at the same relative depth: smollm2-135m (30 layers) -> [5],
    gemma3-270m (18) -> [3], a 4-layer tiny model -> [1]."""
    return [min(depth - 1, round(DEFAULT_LAYER_FRACTION * depth))]


@dataclass
class ROME(WeightEditor):
    name: ClassVar[str] = "rome"

    layers: list[int] | None = None  # null: [round(5/32 * depth)] (EasyEdit hparams/ROME/llama-7b.yaml: [5] of 32)
    v_num_grad_steps: int = 25
    v_lr: float = 0.5
    v_weight_decay: float = 1e-3
    clamp_norm_factor: float = 4.0
    kl_factor: float = 0.0625
    mom2_adjustment: bool = False  # EasyEdit llama-7b: false (the GPT-2/GPT-J paper runs: true)
    mom2_n_samples: int = 100000  # texts in the key sample (capped at the local text's docstrings)
    mom2_max_length: int = 512  # tokens per text sample
    mom2_cache_on_disk: bool = True
    context_template_length_params: list = field(default_factory=lambda: [[5, 10], [10, 10]])
    template_seed: int = 0

    def __post_init__(self):
        if self.layers is not None:
            self.layers = [int(x) for x in self.layers] if hasattr(self.layers, "__iter__") else [int(self.layers)]
        self.context_template_length_params = [[int(a), int(b)] for a, b in (self.context_template_length_params or [])]
        self._stats = {"edits": 0, "edit_calls": 0, "edit_seconds": 0.0, "mom2_seconds": 0.0, "template_seconds": 0.0}
        self.last_edit: list[dict] = []

    def edited_weights(self, lm) -> list[str]:
        return [ru.down_proj_weight_name(lm.model, layer) for layer in self.resolved_layers(lm)]

    def apply_edits(self, lm, requests: list[EditRequest], layers: list[int] | None = None) -> None:
        """Write `requests` into the weights in place (no restore; `edit` restores)."""
        layers = layers or self.resolved_layers(lm)
        start = time.perf_counter()
        t = time.perf_counter()
        groups = ru.context_templates(lm, self.context_template_length_params, self.template_seed)
        flat = [x for g in groups for x in g]  # ROME averages over all templates alike
        self._stats["template_seconds"] += time.perf_counter() - t
        cov_inv = {}
        if self.mom2_adjustment:
            t = time.perf_counter()
            moments = ru.second_moments(lm, layers, self.mom2_n_samples, self.mom2_max_length, self.mom2_cache_on_disk)
            self._stats["mom2_samples_used"] = ru.mom2_samples_used(self.mom2_n_samples)
            cov_inv = {layer: torch.inverse(c.double()).float() for layer, c in moments.items()}
            self._stats["mom2_seconds"] += time.perf_counter() - t
        hp = ru.ValueSettings(self.v_num_grad_steps, self.v_lr, self.v_weight_decay, self.kl_factor,
                              self.clamp_norm_factor)
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
        self._stats["edits"] += len(requests)
        self._stats["edit_calls"] += 1
        self._stats["edit_seconds"] += time.perf_counter() - start

    def resolved_layers(self, lm) -> list[int]:
        return ru.resolve_layers(lm, self.layers, self.name, default_layers)

    def describe(self) -> dict:
        s = dict(self._stats)
        if s["edits"]:
            s["edits_per_second"] = s["edits"] / s["edit_seconds"] if s["edit_seconds"] else None
        return s
