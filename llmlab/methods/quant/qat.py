"""Quantization-aware training by distillation from the full-precision fine-tuned model (the baselines of ZSAQ:
QAT with the task's real training inputs, the upper bound, and QAT with random tokens, a zero-shot baseline).

The quantized model (fake-quantized linears, straight-through gradients) minimises the output divergence to the
frozen full-precision model (llmlab.methods.quant.ptq.divergence: KL of the class distributions, MSE for
regression) on the inputs; no labels are used, so real and random data differ only in the inputs. AdamW, constant
lr after no warmup, dropout off (the divergence then measures the quantization error, not dropout noise). The schedule is our choice, not a paper's (ZSAQ's is not readable here): lr 2e-5 (a usual
BERT fine-tuning rate), one pass over the task's training batches for real data, the same number of steps for
random data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from llmlab.errors import UserError
from llmlab.methods.quant.ptq import Quantizer, divergence
from llmlab.progress import progress


def random_inputs(data, batch_size: int, length: int, gen: torch.Generator) -> dict:
    """[CLS] + uniform random token ids + [SEP], all attended: inputs that carry no knowledge of the task."""
    special = [i for i in data.special_ids.values() if i is not None]
    low = max(special + [0]) + 1 if special and max(special) < data.vocab_size // 2 else 1000
    ids = torch.randint(low, data.vocab_size, (batch_size, length), generator=gen)
    if data.special_ids.get("cls") is not None:
        ids[:, 0] = data.special_ids["cls"]
    if data.special_ids.get("sep") is not None:
        ids[:, -1] = data.special_ids["sep"]
    return {"input_ids": ids.to(data.device), "attention_mask": torch.ones_like(ids).to(data.device)}


def task_sequences(data, n: int) -> list[torch.Tensor]:
    """The task's first `n` training inputs, each without its padding ([1, length]): calibration sequences."""
    seqs: list[torch.Tensor] = []
    epoch = 0
    while len(seqs) < n:
        before = len(seqs)
        for batch in data.batches(epoch):
            mask = batch.get("attention_mask", torch.ones_like(batch["input_ids"]))
            seqs += [ids[m.bool()][None] for ids, m in zip(batch["input_ids"], mask)]
            if len(seqs) >= n:
                break
        if len(seqs) == before:
            break
        epoch += 1
    return seqs[:n]


def model_inputs(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids", "inputs_embeds")}


@dataclass
class QAT(Quantizer):
    name: ClassVar[str] = "qat"
    trains: ClassVar[bool] = True

    data: str = "real"            # real: the task's training inputs (upper bound) | random: random tokens
    steps: int | None = None      # null: one pass over the task's training batches
    learning_rate: float = 2e-5
    seq_length: int = 64          # random inputs' length
    batch_size: int | None = None  # null: the task's batch size

    def __post_init__(self):
        super().__post_init__()
        if self.data not in ("real", "random"):
            raise UserError(f"method.data={self.data!r}: QAT distils on `real` (the task's training inputs) or "
                            f"`random` (random tokens) data.")

    def train_quantized(self, model, teacher, data, ctx) -> None:
        steps = int(self.steps or data.steps_per_epoch)
        gen = torch.Generator().manual_seed(ctx.seed)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=self.learning_rate)

        def batches():
            epoch = 0
            while True:
                if self.data == "random":
                    yield random_inputs(data, self.batch_size or data.batch_size, self.seq_length, gen)
                    continue
                for b in data.batches(epoch):
                    yield model_inputs(b)
                epoch += 1

        model.eval()  # dropout off: the divergence measures the quantization error, not dropout noise (our choice)
        losses = []
        for step, batch in zip(progress(range(steps), desc=f"qat ({self.data})", unit="step"), batches()):
            with torch.no_grad():
                target = teacher(**batch).logits
            loss = divergence(target, model(**batch).logits, data.regression)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            if ctx is not None and hasattr(ctx, "log_step"):
                ctx.log_step(f"qat_{self.data}", step + 1, {"divergence": losses[-1]})
        self._facts.update({"data": self.data, "steps": steps, "divergence_first": losses[0] if losses else None,
                            "divergence_last": losses[-1] if losses else None})
