"""Fake quantization of weights and activations with the straight-through estimator.

`QuantLinear` replaces an `nn.Linear`: in its forward the input is quantized per tensor and the weight per output
channel, both symmetric and uniform on the narrow signed range [-(2^(b-1) - 1), 2^(b-1) - 1] (2 bits: the three
levels -s, 0, s, as ternary BERT quantizers use; 8 bits: [-127, 127]), the scale being the absolute maximum over
the tensor (activations: of the current batch, so no calibration data is needed: "min-max") or over the channel
(weights) divided by the top level. The rounding is torch's own fake-quantize op
(`torch.fake_quantize_per_tensor_affine` / `_per_channel_affine`, torch.ao's primitives), whose backward passes
the gradient straight through inside the range (all of it, with an absmax scale). The fp32 weight stays the
trained parameter (QAT and ZSAQ move it); `int_weight()` gives the integers and scales a deployment stores.

`quantize_linears(model, w_bits, a_bits)` replaces every linear of the encoder's blocks (attention q/k/v/output,
FFN in/out; llmlab.models.anatomy) and keeps embeddings, pooler and classifier head in full precision, the usual
choice of BERT quantization papers (TernaryBERT, BinaryBERT) and, by its own description, ZSAQ's baselines.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from llmlab.models import anatomy


def _qmax(bits: int) -> int:
    return 2 ** (bits - 1) - 1


def fake_quant_per_tensor(x: torch.Tensor, bits: int) -> torch.Tensor:
    q = _qmax(bits)
    scale = (x.detach().abs().amax().float() / q).clamp_min(1e-8)
    return torch.fake_quantize_per_tensor_affine(x, scale, torch.zeros((), dtype=torch.int32, device=x.device), -q, q)


def fake_quant_per_token(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Each token (row of the last dimension) on its own absmax scale (ZeroQuant's token-wise activations)."""
    q = _qmax(bits)
    rows = x.reshape(-1, x.shape[-1])
    scale = (rows.detach().abs().amax(dim=1).float() / q).clamp_min(1e-8)
    zero = torch.zeros(rows.shape[0], dtype=torch.int32, device=x.device)
    return torch.fake_quantize_per_channel_affine(rows, scale, zero, 0, -q, q).reshape(x.shape)


def weight_scales(w: torch.Tensor, bits: int, group_rows: int = 1) -> torch.Tensor:
    """Per-output-channel absmax scales [out]; with `group_rows` > 1, one scale per group of consecutive rows
    (ZeroQuant's group-wise weights), repeated over the group's rows."""
    absmax = w.detach().abs().amax(dim=1).float()
    if group_rows > 1:
        groups = absmax.split(group_rows)
        absmax = torch.cat([g.max().expand(len(g)) for g in groups])
    return (absmax / _qmax(bits)).clamp_min(1e-8)


def fake_quant_per_channel(w: torch.Tensor, bits: int, scale: torch.Tensor | None = None) -> torch.Tensor:
    q = _qmax(bits)
    scale = weight_scales(w, bits) if scale is None else scale
    zero = torch.zeros(w.shape[0], dtype=torch.int32, device=w.device)
    return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -q, q)


class QuantLinear(nn.Module):
    """A linear whose input (per tensor) and weight (per output channel) are fake-quantized in the forward."""

    def __init__(self, linear: nn.Linear, w_bits: int, a_bits: int, group_rows: int = 1, per_token: bool = False):
        super().__init__()
        self.weight, self.bias = linear.weight, linear.bias
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.w_bits, self.a_bits = int(w_bits), int(a_bits)
        self.group_rows, self.per_token = int(group_rows), bool(per_token)  # ZeroQuant's fine-grained variant
        self.register_buffer("w_scale", None)  # fixed per-channel scales (GPTQ sets them); None: absmax each forward

    def extra_repr(self) -> str:
        extra = (f", {self.group_rows}-row groups" if self.group_rows > 1 else "") + \
            (", token-wise activations" if self.per_token else "")
        return f"in={self.in_features}, out={self.out_features}, W{self.w_bits}A{self.a_bits}{extra}"

    def scales(self) -> torch.Tensor:
        return weight_scales(self.weight, self.w_bits, self.group_rows) if self.w_scale is None else self.w_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.a_bits < 32:
            x = fake_quant_per_token(x, self.a_bits) if self.per_token else fake_quant_per_tensor(x, self.a_bits)
        w = fake_quant_per_channel(self.weight, self.w_bits, self.scales()) if self.w_bits < 32 else self.weight
        return F.linear(x, w, self.bias)

    @torch.no_grad()
    def int_weight(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(integer weight [out, in] as int8, per-channel scale [out]): what a deployment stores."""
        scale = self.scales()
        q = torch.clamp(torch.round(self.weight.float() / scale[:, None]), -_qmax(self.w_bits), _qmax(self.w_bits))
        return q.to(torch.int8), scale


def quantize_linears(model: nn.Module, w_bits: int, a_bits: int, **kwargs) -> list[QuantLinear]:
    """Replace every linear inside the encoder's blocks by a QuantLinear (in place); return them."""
    out = []
    for block in anatomy.blocks(model):
        for name, linear in list(anatomy.linears(block).items()):
            parent = block.get_submodule(name.rsplit(".", 1)[0]) if "." in name else block
            q = QuantLinear(linear, w_bits, a_bits, **kwargs)
            setattr(parent, name.rsplit(".", 1)[-1], q)
            out.append(q)
    return out


def weight_bytes(model: nn.Module) -> dict:
    """Bytes of the weights as deployed: quantized linears at w_bits per weight plus an fp32 scale per channel,
    everything else (embeddings, norms, biases, head) at its own dtype; beside the all-fp32 size."""
    quant, other, fp32, linear_fp32 = 0, 0, 0, 0
    counted = set()
    for m in model.modules():
        if isinstance(m, QuantLinear):
            quant += m.weight.numel() * m.w_bits / 8 + m.out_features * 4
            linear_fp32 += m.weight.numel() * 4
            counted.add(id(m.weight))
    for p in model.parameters():
        fp32 += p.numel() * 4
        if id(p) not in counted:
            other += p.numel() * p.element_size()
    return {"quantized_bytes": int(quant + other), "fp32_bytes": int(fp32), "ratio": (quant + other) / max(fp32, 1),
            "linear_bytes": int(quant), "linear_fp32_bytes": int(linear_fp32),
            "linear_ratio": quant / max(linear_fp32, 1)}
