"""Quantizing a fine-tuned encoder: the shared base, and post-training quantization (PTQ, no data).

Every quantization method acts on the model the task has fine-tuned (`FineTunedTransform.after_finetune`, called
by task=glue after its full-precision fine-tune, which the rows of one task and seed share): it replaces the
encoder blocks' linears by fake-quantized ones (llmlab.methods.quant.fake_quant: W`w_bits` per output channel,
A`a_bits` per tensor, symmetric, min-max scales) and then, depending on the method, trains them:

    ptq        nothing more: min-max scales, no data
    zeroquant  row-group weight scales, token-wise activations, then layer-by-layer distillation (zeroquant.py)
    gptq       Hessian-guided rounding calibrated on the task's training inputs (gptq.py)
    qat        distillation from the full-precision model on the task's training inputs (real data: the upper
               bound) or on random tokens (methods/quant/qat.py)
    zsaq       distillation on inputs a generator makes, minimax with sharpness-aware steps (methods/quant/zsaq.py)

`report()` gives the bytes of the weights as deployed (w_bits per quantized weight + a scale per channel) beside
fp32, and what was trained.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch.nn import functional as F

from llmlab.capabilities import FineTunedTransform
from llmlab.errors import UserError
from llmlab.methods.base import Method
from llmlab.methods.quant.fake_quant import quantize_linears, weight_bytes


def divergence(fp_logits: torch.Tensor, q_logits: torch.Tensor, regression: bool) -> torch.Tensor:
    """The output divergence the quantized model minimises: KL(p_fp || p_q) of the class distributions, or the
    squared error of a regression output (STS-B); mean over the batch."""
    if regression:
        return F.mse_loss(q_logits.float(), fp_logits.float())
    return F.kl_div(F.log_softmax(q_logits.float(), -1), F.log_softmax(fp_logits.float(), -1), log_target=True,
                    reduction="batchmean")


@dataclass
class Quantizer(Method, FineTunedTransform):
    name: ClassVar[str] = "quantizer"
    family: ClassVar[str] = "quant"

    w_bits: int = 4                # the paper's settings, by the summaries we could read: W4A8 and W2A8
    a_bits: int = 8
    _facts: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self):
        for what, bits in (("w_bits", self.w_bits), ("a_bits", self.a_bits)):
            if not (2 <= int(bits) <= 8 or int(bits) == 32):
                raise UserError(f"method.{what}={bits}: quantize to 2..8 bits (32: leave in full precision).")

    trains: ClassVar[bool] = False    # distils the quantized model from the full-precision one

    def after_finetune(self, model, data, ctx):
        teacher = None
        if self.trains:  # the full-precision fine-tuned model, frozen: what the quantized one learns to match
            import copy

            teacher = copy.deepcopy(model).eval().requires_grad_(False)
        layers = quantize_linears(model, self.w_bits, self.a_bits, **self.quantizer_options())
        self._facts.update({"setting": f"W{self.w_bits}A{self.a_bits}", "quantized_linears": len(layers),
                            **weight_bytes(model)})
        if teacher is not None:
            self.train_quantized(model, teacher, data, ctx)
        model.eval()
        return model

    def quantizer_options(self) -> dict:
        """Options of QuantLinear beyond the bits (ZeroQuant: row groups, token-wise activations)."""
        return {}

    def train_quantized(self, model, teacher, data, ctx) -> None:  # pragma: no cover - trainers override
        raise NotImplementedError

    def summary(self) -> str | None:
        f = self._facts
        if not f:
            return None
        return (f"{self.name} {f['setting']}: {f['quantized_linears']} linears quantized; weights "
                f"{f['quantized_bytes'] / 2**20:.1f} MiB vs fp32 {f['fp32_bytes'] / 2**20:.1f} MiB ({f['ratio']:.2f}x)")


@dataclass
class PTQ(Quantizer):
    name: ClassVar[str] = "ptq"

