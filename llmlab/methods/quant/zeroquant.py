"""ZeroQuant (Yao et al., "ZeroQuant: Efficient and Affordable Post-Training Quantization for Large-Scale
Transformers", NeurIPS 2022), a baseline of ZSAQ's table: fine-grained post-training quantization, then
layer-by-layer knowledge distillation (LKD).

- weights: one scale per group of consecutive output rows (group-wise); activations: one scale per token,
  computed on the fly (token-wise); both symmetric (llmlab.methods.quant.fake_quant);
- LKD: block by block, the quantized block learns to give the full-precision block's output on the same input,
  that input being what the already-distilled quantized blocks below produce (MSE, Adam); the block's inputs come
  from random tokens by default (`lkd_data: random`: no task data, as ZeroQuant's data-free use of LKD) or from the
  task's training inputs (`real`). `lkd_steps: 0` is ZeroQuant without LKD.
ASSUMPTION (not read from the paper here): the group size (64 rows), LKD's steps (50 per block), batch (16
sequences of 64 random tokens) and lr (5e-5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from llmlab.errors import UserError
from llmlab.methods.quant.ptq import Quantizer
from llmlab.methods.quant.qat import random_inputs, task_sequences
from llmlab.models import anatomy
from llmlab.models.activations import block_output, first_block_inputs, propagate
from llmlab.progress import progress


@dataclass
class ZeroQuant(Quantizer):
    name: ClassVar[str] = "zeroquant"

    group_rows: int = 64       # ASSUMPTION: rows per weight group
    lkd_steps: int = 50        # ASSUMPTION: LKD steps per block (0: no LKD)
    lkd_data: str = "random"   # random | real
    lkd_lr: float = 5e-5       # ASSUMPTION
    batch_size: int = 16       # ASSUMPTION: sequences per LKD step
    seq_length: int = 64       # random sequences' length

    def __post_init__(self):
        super().__post_init__()
        if self.lkd_data not in ("random", "real"):
            raise UserError(f"method.lkd_data={self.lkd_data!r}: LKD feeds `random` tokens or the task's `real` "
                            f"training inputs.")

    @property
    def trains(self) -> bool:  # type: ignore[override]
        return self.lkd_steps > 0

    def quantizer_options(self) -> dict:
        return {"group_rows": self.group_rows, "per_token": True}

    def after_finetune(self, model, data, ctx):
        self._blocks = list(anatomy.blocks(model))  # found before the swap (anatomy finds blocks by nn.Linear)
        return super().after_finetune(model, data, ctx)

    def train_quantized(self, model, teacher, data, ctx) -> None:
        """LKD: quantized block i matches full-precision block i on the quantized blocks' outputs below it."""
        gen = torch.Generator().manual_seed(ctx.seed)
        device = next(model.parameters()).device
        if self.lkd_data == "random":
            ids = [random_inputs(data, self.batch_size, self.seq_length, gen)["input_ids"] for _ in range(self.lkd_steps)]
        else:  # one unpadded training input per step (a block sees no attention mask here, so no padding)
            ids = [s.to(device) for s in task_sequences(data, self.lkd_steps)]
        # the first block's inputs (embeddings: full precision in both models), once per step
        inps = first_block_inputs(teacher, ids)
        student_blocks, teacher_blocks = self._blocks, list(anatomy.blocks(teacher))
        losses = []
        model.eval()  # dropout off, as QAT and ZSAQ here
        for s_block, t_block in progress(list(zip(student_blocks, teacher_blocks)), desc="zeroquant LKD", unit="block"):
            opt = torch.optim.Adam([p for p in s_block.parameters() if p.requires_grad], lr=self.lkd_lr)
            for hidden, kwargs in inps:
                with torch.no_grad():
                    target = block_output(t_block(hidden, **kwargs))
                loss = torch.nn.functional.mse_loss(block_output(s_block(hidden, **kwargs)), target)
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
            inps = propagate(s_block, inps)
        self._facts.update({"lkd_data": self.lkd_data, "lkd_steps_per_block": self.lkd_steps,
                            "lkd_mse_first": losses[0] if losses else None, "lkd_mse_last": losses[-1] if losses else None})
