"""GPTQ (Frantar et al., "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained Transformers", ICLR
2023; official code IST-DASLab/gptq `gptq.py` `fasterquant`), a baseline of ZSAQ's table: post-training
quantization that uses calibration data (here the task's training inputs: not zero-shot).

Block by block, on the outputs of the already-quantized blocks below (as the official `opt_sequential`): the
inputs of every quantized linear of the block give H = 2/n Σ x xᵀ; dead inputs are zeroed, 1 % of the mean diagonal
is added (percdamp 0.01), and H⁻¹'s upper Cholesky factor drives the column-by-column rounding: each column is
rounded on its channel's grid and the rounding error, scaled by 1/[H⁻¹]_ii, is pushed onto the columns not yet
rounded (lazy batches of 128 columns). The per-channel scales are fixed from the weight before the updates
(`quantizer.find_params` on the whole weight) and kept (`QuantLinear.w_scale`), so the model evaluates exactly the
grid GPTQ rounded to. The grids are the symmetric ones every row of the table uses (the official quantizer is
asymmetric min-max unless `--sym`). Columns in their natural order (`--act-order` off, the official default).

The calibration sequences are fed one at a time, so no padding enters the statistics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from llmlab.methods.pruning.sparsegpt import obs_sweep
from llmlab.methods.quant.fake_quant import QuantLinear, _qmax, weight_scales
from llmlab.methods.quant.ptq import Quantizer
from llmlab.methods.quant.qat import task_sequences
from llmlab.models import anatomy
from llmlab.models.activations import SecondMoment, block_moments, first_block_inputs, propagate


@dataclass
class GPTQ(Quantizer):
    name: ClassVar[str] = "gptq"

    nsamples: int = 128       # the official --nsamples 128 (C4 segments there; here the task's training inputs)
    blocksize: int = 128      # fasterquant(blocksize=128)
    percdamp: float = 0.01    # fasterquant(percdamp=.01)

    def after_finetune(self, model, data, ctx):
        # the blocks and their first inputs before the swap (the embeddings stay in full precision, so the first
        # block's inputs do not change; anatomy finds blocks by their nn.Linear projections)
        seqs = task_sequences(data, self.nsamples)
        inps = first_block_inputs(model, seqs)
        blocks = list(anatomy.blocks(model))
        model = super().after_finetune(model, data, ctx)  # the block linears become QuantLinear
        self.calibrate(blocks, inps)
        self._facts["calibration_sequences"] = len(seqs)
        return model

    @torch.no_grad()
    def calibrate(self, blocks: list, inps: list) -> None:
        rounded = 0
        for block in blocks:
            subset = {n: m for n, m in block.named_modules() if isinstance(m, QuantLinear)}
            stats = block_moments(block, subset, inps)
            for name, layer in subset.items():
                self.quantize_linear(layer, stats[name])
                rounded += 1
            inps = propagate(block, inps)  # the next block sees the quantized outputs
        self._facts.update({"gptq_linears": rounded, "blocksize": self.blocksize, "percdamp": self.percdamp})

    def quantize_linear(self, layer: QuantLinear, stats: SecondMoment) -> None:
        W = layer.weight.data.clone().float()
        scale = weight_scales(W, layer.w_bits)               # fixed before the updates (find_params on W)
        top = _qmax(layer.w_bits)
        Hinv = stats.inverse_hessian_cholesky(W, self.percdamp)
        obs_sweep(W, Hinv, self.blocksize, lambda i, w, W1, Hinv1, state: torch.clamp(torch.round(w / scale), -top, top)
                  * scale)
        layer.weight.data.copy_(W.to(layer.weight.dtype))
        layer.w_scale = scale.to(layer.weight.device)
