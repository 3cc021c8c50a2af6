"""FT: constrained fine-tuning of one MLP output matrix (FT-L and FT-M, as EasyEdit runs them).

Following EasyEdit easyeditor/models/ft/ft_main.py (execute_ft) with hparams/FT/llama-7b.yaml:
Adam on the `down_proj` weight of the chosen layer(s) only, `num_steps` passes over the edit
requests in chunks of `batch_size`; a chunk whose loss is below 1e-2 takes no step, and the
loop stops when a pass's mean loss is below 1e-2. Two objectives (EasyEdit
`objective_optimization`; survey arXiv:2401.01286 names them):

  prompt_last (FT-L)  -mean log p(target token | prompt) of every target token, read at the
                      prompt's last position (ROME's FT baseline)
  target_new  (FT-M)  cross-entropy over the target tokens of `prompt + " " + target`, prompt masked

`norm_constraint` (float or null) clamps each weight to within ±eps of its original value after
every step (ROME's FT-L "constr" variant uses 5e-5; EasyEdit's llama/qwen hparams set it false).
The edit context restores the touched weights bit for bit on exit (WeightSnapshot).

Layer: `layers: null` picks round(21/32 · depth) — EasyEdit's layer 21 of Llama-2-7B's 32 — so
the default scales to small models (SmolLM2-135M: 20 of 30; Gemma-3-270M: 12 of 18). Give
explicit indices (method.layers=[27] for EasyEdit's Qwen2.5-7B setting); an index outside the
model's layers is an error.

Target tokens: the tokens of `prompt + " " + target` after the prompt's own tokens (EasyEdit
prefixes the target with a space the same way). For prompt_last, EasyEdit tokenizes the target
alone, which on Llama tokenizers adds a BOS token to the target; we use the in-context target
tokens instead, without BOS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from llmlab.errors import UserError
from llmlab.methods.editing.base import EditRequest, WeightEditor
from llmlab.models import anatomy
from llmlab.models.probes import prompt_target_ids

OBJECTIVES = ("prompt_last", "target_new")
DEFAULT_LAYER_FRACTION = 21 / 32  # EasyEdit hparams/FT/llama-7b.yaml: layers [21] of 32


@dataclass
class FT(WeightEditor):
    name: ClassVar[str] = "ft"

    layers: list[int] | None = None  # null: [round(21/32 * num_layers)]
    objective: str = "prompt_last"  # prompt_last (FT-L) | target_new (FT-M)
    num_steps: int = 25
    lr: float = 5e-4
    weight_decay: float = 0.0
    norm_constraint: float | None = None
    batch_size: int = 1
    stop_loss: float = 1e-2  # EasyEdit: no step below it; stop when a pass's mean is below it
    module_template: str | None = None  # null: the MLP output weight (down_proj); or e.g. "layers.{}.mlp.up_proj.weight"

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise UserError(f"ft: objective must be one of {', '.join(OBJECTIVES)} "
                            f"(prompt_last = FT-L, target_new = FT-M); got {self.objective!r}.")
        if self.num_steps < 0 or self.batch_size < 1:
            raise UserError(f"ft: num_steps must be >= 0 and batch_size >= 1; got {self.num_steps}, {self.batch_size}.")
        self.last_losses: list[float] = []
        self._losses: list[tuple[float, float]] = []  # (first pass, last pass) mean loss of every edit

    # -- which weights -------------------------------------------------------------------------
    def resolved_layers(self, model) -> list[int]:
        depth = anatomy.num_blocks(model)
        if self.layers is None:
            return [min(depth - 1, round(DEFAULT_LAYER_FRACTION * depth))]
        layers = [int(i) for i in self.layers]
        bad = [i for i in layers if not 0 <= i < depth]
        if bad:
            raise UserError(f"ft: layer(s) {bad} out of range for this model, which has {depth} layers "
                            f"(0..{depth - 1}). Set method.layers=[i] with 0 <= i < {depth}, or "
                            f"method.layers=null for round(21/32 * depth) = {round(DEFAULT_LAYER_FRACTION * depth)}.")
        return layers

    def parameter_names(self, model) -> list[str]:
        """The MLP output weight of each chosen layer (llmlab.models.anatomy), or the parameter named
        by `module_template` when given."""
        if self.module_template is None:
            return [anatomy.parameter_name(model, anatomy.mlp_out(anatomy.block(model, layer)).weight)
                    for layer in self.resolved_layers(model)]
        names = [n for n, _ in model.named_parameters()]
        chosen = []
        for layer in self.resolved_layers(model):
            suffix = self.module_template.format(layer)
            hits = [n for n in names if n == suffix or n.endswith("." + suffix)]
            if len(hits) != 1:
                raise UserError(f"ft: expected one parameter named like '*{suffix}' in {type(model).__name__}, "
                                f"found {len(hits)}. Set method.module_template to a parameter name with {{}} for "
                                f"the layer (e.g. 'layers.{{}}.mlp.up_proj.weight'), or null for the MLP output weight.")
            chosen.append(hits[0])
        return chosen

    # -- the edit ------------------------------------------------------------------------------
    def edited_weights(self, lm) -> list[str]:
        return self.parameter_names(lm.model)

    def apply_edits(self, lm, requests: list[EditRequest]) -> None:
        self.train(lm, requests, self.parameter_names(lm.model))

    def loss(self, lm, request: EditRequest) -> torch.Tensor:
        ids, n_prompt = prompt_target_ids(lm.tokenizer, request.prompt, request.target_new)
        if n_prompt >= len(ids):
            raise UserError(f"ft: the target {request.target_new!r} adds no tokens after the prompt {request.prompt!r}.")
        input_ids = torch.tensor([ids], device=lm.device)
        targets = input_ids[0, n_prompt:]
        # Logits only where the loss reads them (`logits_to_keep`): the LM head over every position
        # costs more than the layers on short prompts with a large vocabulary (Gemma 3: 262k).
        if self.objective == "prompt_last":
            logits = lm.model(input_ids=input_ids[:, :n_prompt], logits_to_keep=1).logits[0, -1].float()
            return -torch.log_softmax(logits, dim=-1)[targets].mean()
        keep = len(targets) + 1
        logits = lm.model(input_ids=input_ids, logits_to_keep=keep).logits[0, :-1].float()
        return torch.nn.functional.cross_entropy(logits, targets)

    def train(self, lm, requests: list[EditRequest], names: list[str]) -> list[float]:
        """Optimize the named weights in place (the caller restores them); returns each pass's mean loss."""
        model = lm.model
        params = dict(model.named_parameters())
        weights = [params[n] for n in names]
        originals = [w.detach().clone() for w in weights] if self.norm_constraint is not None else []
        flags = {n: p.requires_grad for n, p in params.items()}
        self.last_losses = []
        try:
            for p in params.values():
                p.requires_grad_(False)
            for w in weights:
                w.requires_grad_(True)
            opt = torch.optim.Adam(weights, lr=self.lr, weight_decay=self.weight_decay)
            with torch.enable_grad():
                for _ in range(self.num_steps):
                    total = 0.0
                    for start in range(0, len(requests), self.batch_size):
                        chunk = requests[start:start + self.batch_size]
                        opt.zero_grad()
                        loss = torch.stack([self.loss(lm, r) for r in chunk]).mean()
                        if loss.item() >= self.stop_loss:
                            loss.backward()
                            opt.step()
                        if self.norm_constraint is not None:
                            eps = float(self.norm_constraint)
                            with torch.no_grad():
                                for w, w0 in zip(weights, originals):
                                    w.copy_(torch.clamp(w, min=w0 - eps, max=w0 + eps))
                        total += loss.item() * len(chunk)
                    self.last_losses.append(total / max(1, len(requests)))
                    if self.last_losses[-1] < self.stop_loss:
                        break
            if self.last_losses:
                self._losses.append((self.last_losses[0], self.last_losses[-1]))
        finally:
            opt = None
            for n, p in params.items():
                p.grad = None
                p.requires_grad_(flags[n])
        return self.last_losses

    def facts(self) -> dict:
        """The optimisation of the edits: mean loss of the first pass (before any step) and of the last
        pass (before its step), passes run; for the last edit and averaged over every edit."""
        out = {"variant": "FT-L" if self.objective == "prompt_last" else "FT-M"}
        if self.last_losses:
            out.update(last_edit_loss_first_pass=self.last_losses[0], last_edit_loss_last_pass=self.last_losses[-1],
                       last_edit_passes=len(self.last_losses))
        if self._losses:
            out.update(edits_with_loss=len(self._losses),
                       loss_first_pass_mean=sum(a for a, _ in self._losses) / len(self._losses),
                       loss_last_pass_mean=sum(b for _, b in self._losses) / len(self._losses))
        return out
