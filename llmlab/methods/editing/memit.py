"""MEMIT (Meng et al., 2023, "Mass-Editing Memory in a Transformer"): a batch of facts written
jointly into the MLP down-projections of several consecutive layers.

As memit_main.execute_memit:
  z_i   = the residual stream after the last edited layer L at subject i's last token, with δ_i
          optimized so the model emits target i (compute_z.py; same loss as ROME's compute_v)
  for each edited layer l, lowest first (weights of lower layers already updated):
    K     = down_proj inputs at the subjects' last tokens, averaged over templates (compute_ks.py)
    R     = (z − h_L(current weights)) / (number of edited layers from l up)
    ΔW_l  = R Kᵀ (λ C_l + K Kᵀ)⁻¹        λ = mom2_update_weight, C_l = E[k kᵀ] at layer l

The residual split assumes each layer's MLP output is added to the residual stream as it is
(GPT-J, Llama, Qwen, Mistral). Gemma 2/3 normalize it first (`post_feedforward_layernorm`), so
the update does not move h_L by R: on gemma3-270m the residual error grows from layer to layer
and the target's probability falls. MEMIT warns once for such models and records `z_error` per
layer of the last edit (`method_info.last_z_error`), which shows it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from llmlab.methods.editing import _rank_update as ru
from llmlab.methods.editing.base import EditRequest
from llmlab.models import anatomy

log = logging.getLogger(__name__)


def default_layers(depth: int) -> list[int]:
    """EasyEdit's llama-7b layers [4..8] of 32 at the same relative depth: five consecutive layers
    from round(4/32 * depth): smollm2-135m (30 layers) -> [4..8], gemma3-270m (18) -> [2..6],
    a 4-layer tiny model -> [0..3]."""
    count = min(5, depth)
    start = min(round(4 / 32 * depth), depth - count)
    return list(range(start, start + count))


@dataclass
class MEMIT(ru.KeyValueEditor):
    name: ClassVar[str] = "memit"
    default_layers = staticmethod(default_layers)

    mom2_adjustment: bool = True  # false: C = I (then λ weighs an identity; lower mom2_update_weight)
    mom2_update_weight: float = 15000.0
    context_template_length_params: list = field(default_factory=lambda: [[10, 5]])  # memit_main.get_context_templates

    def __post_init__(self):
        super().__post_init__()
        self._stats["z_seconds"] = 0.0
        self.last_edit: dict = {}
        self._warned = False

    def apply_edits(self, lm, requests: list[EditRequest], layers: list[int] | None = None) -> None:
        """Write `requests` jointly into the weights in place (no restore; `edit` restores)."""
        layers = layers or self.resolved_layers(lm)
        if not requests:
            return
        groups = self.templates(lm)
        flat = [x for g in groups for x in g]
        if self.mom2_adjustment:
            covs = self.key_moments(lm, layers)
        else:
            d = ru.down_proj(lm.model, layers[0]).in_features
            covs = {layer: torch.eye(d, device=lm.device) for layer in layers}
        blocks = ru.decoder_layers(lm.model)
        if any(anatomy.normalizes_mlp_output(blocks[layer]) for layer in layers):
            self._stats["post_mlp_norm"] = True
            if not self._warned:
                self._warned = True
                log.warning("memit: %s normalizes each MLP output before the residual add "
                            "(post_feedforward_layernorm): MEMIT's residual update assumes it is added as it is, "
                            "so its edits miss (see method_info.last_z_error). ROME or FT suit this model better.",
                            type(lm.model).__name__)
        # z at the last edited layer, one optimization per request (compute_z.py).
        t = time.perf_counter()
        z_block = blocks[layers[-1]]
        hp = self.value_settings()
        zs, infos = [], []
        for request in requests:
            info = {"target_new": request.target_new}
            v_init, delta = ru.optimize_value(lm, z_block, request, flat, hp, stats=info)
            zs.append(v_init + delta)
            infos.append(info)
        zs = torch.stack(zs, dim=1)  # [hidden, n]
        self._stats["z_seconds"] += time.perf_counter() - t

        plain = [ru.template_prompts(lm.tokenizer, ["{}"], r.prompt, r.subject)[0] for r in requests]
        per_layer = []
        for i, layer in enumerate(layers):
            proj = ru.down_proj(lm.model, layer)
            keys = torch.stack([ru.mean_key(lm, layer, groups, r.prompt, r.subject) for r in requests], dim=1)
            _, cur = ru.io_at(lm, z_block, plain)  # [n, hidden] under the weights updated so far
            targets = zs - cur.T
            resid = targets / (len(layers) - i)  # spread the residual over the remaining layers
            upd = ru.memit_update(keys, resid, covs[layer], self.mom2_update_weight)
            with torch.no_grad():
                proj.weight.add_(upd.to(proj.weight.dtype))
            per_layer.append({"layer": layer, "z_error": float(targets.norm(dim=0).mean()),
                              "update_norm": float(upd.norm())})
        self.last_edit = {"requests": infos, "layers": per_layer}
        self._stats["last_z_error"] = [round(x["z_error"], 3) for x in per_layer]
        self._stats["last_edit"] = infos
