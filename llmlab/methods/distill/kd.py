"""Distillation as a method: the composed model is the student, `teacher` (a model config from the
`model` group) the teacher; training happens in `prepare` (ATKD release: distill/train.py,
distill_trainer.py), so any task then evaluates the student.

Sequences are the training set's gold responses (the release's `--sample_source gt`, off-policy);
the teacher's logits are computed once per batch under no_grad, the student's with gradients, and the
loss is one of `losses.OBJECTIVES` (forward, reverse, jsd, tvd, dkd), ATKD (`objective=atkd`), or
plain cross-entropy (`objective=sft`: the no-KD row). Training defaults are distillation.sh's:
AdamW lr 2e-5, weight decay 0, 3 epochs, cosine schedule with 3 % warmup, max length 512.
`student_layers` keeps only the first N blocks of the student (the cpu recipe: a smaller student with
the teacher's tokenizer, made from the same checkpoint).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from llmlab.capabilities import WeightTransform
from llmlab.data.instruct import prompt_for
from llmlab.errors import UserError
from llmlab.methods.base import Method
from llmlab.methods.distill import losses
from llmlab.models.anatomy import blocks
from llmlab.progress import progress

OBJECTIVE_NAMES = ("sft", "forward", "reverse", "jsd", "tvd", "dkd", "atkd")


def alpaca_rows(path: Path) -> list[tuple[str, str]]:
    """(prompt, response) pairs of a Self-Instruct seed file (instruction, instances[input, output]) or of
    an instruction jsonl (instruction, input, output), in the prompt format of ATKD inference.py."""
    pairs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        for inst in row.get("instances") or [{"input": row.get("input", ""), "output": row["output"]}]:
            pairs.append((prompt_for(row["instruction"], inst.get("input")), inst["output"]))
    return pairs


@dataclass
class Distill(Method, WeightTransform):
    name: ClassVar[str] = "kd"
    family: ClassVar[str] = "distill"

    teacher: dict = field(default_factory=dict)   # a model config (method defaults: /model@method.teacher)
    objective: str = "atkd"                       # sft | forward | reverse | jsd | tvd | dkd | atkd
    atkd_reverse: bool = False                    # ATKD with the release's --setting reverse
    alpha: float = losses.ALPHA                   # distill/train.py: alpha 0.2 (ATKD easy weight; DKD TCKD weight)
    beta: float = losses.BETA                     # distill/train.py: beta 1.0 (DKD NCKD weight)
    train_path: str | None = None                 # instruction data: Self-Instruct seed tasks or (instruction, input, output) jsonl
    train_rows: int | None = None                 # use the first N (prompt, response) pairs
    epochs: float = 3.0                           # distillation.sh: --num_train_epochs 3
    lr: float = 2e-5                              # distillation.sh: --learning_rate 2e-5
    batch_size: int = 4                           # distillation.sh: per-device batch x 2 accumulation (GPUs vary)
    warmup_ratio: float = 0.03                    # distillation.sh: --warmup_ratio 0.03, cosine
    max_length: int = 512                         # distillation.sh: --model_max_length 512
    student_layers: int | None = None             # keep the first N blocks of the student (cpu recipe)
    _facts: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self):
        if self.objective not in OBJECTIVE_NAMES:
            raise UserError(f"kd: objective={self.objective!r} is not one of {', '.join(OBJECTIVE_NAMES)}.")

    def check(self) -> None:
        if not self.train_path:
            raise UserError("kd: no training data. Set method.train_path=<jsonl> (Self-Instruct seed tasks, e.g. "
                            "../shared/data/instruct_train/self_instruct_seed_tasks.jsonl, or instruction/input/output rows).")
        if not Path(str(self.train_path)).expanduser().is_file():
            raise UserError(f"kd: method.train_path={self.train_path} does not exist.")

    # -- the loss -----------------------------------------------------------------------------
    def loss(self, student_logits, teacher_logits, gold, ignore):
        if self.objective == "sft":
            ce = nn.functional.cross_entropy(student_logits.float().flatten(0, 1), gold.flatten(), reduction="none")
            return (ce * (~ignore).flatten()).sum() / (~ignore).sum().clamp(min=1)
        if self.objective == "atkd":
            return losses.atkd(student_logits, teacher_logits, gold, ignore, self.alpha, self.atkd_reverse)
        if self.objective == "dkd":
            return losses.dkd(student_logits, teacher_logits, gold, ignore, self.alpha, self.beta)
        return losses.OBJECTIVES[self.objective](student_logits, teacher_logits, gold, ignore)

    # -- training -----------------------------------------------------------------------------
    def prepare(self, lm, ctx):
        from llmlab import models

        if self.student_layers:
            layers = blocks(lm.model)
            del layers[int(self.student_layers):]
            lm.model.config.num_hidden_layers = len(layers)
        teacher = None
        if self.objective != "sft":
            if not self.teacher:
                raise UserError("kd: no teacher. Compose one from the model group: method.teacher=<model config> "
                                "(conf/method/kd.yaml: `/model@teacher: smollm2-135m`).")
            teacher = models.load(self.teacher, device=str(lm.model.device), seed=ctx.seed)
            if teacher.tokenizer.get_vocab() != lm.tokenizer.get_vocab():
                raise UserError(f"kd: the teacher {teacher.spec.get('name')} and the student {lm.spec.get('name')} have "
                                f"different tokenizers; distillation compares their distributions token by token, so "
                                f"both must share one vocabulary (choose a teacher of the student's family).")
            teacher.model.eval()
        pairs = alpaca_rows(Path(str(self.train_path)).expanduser())[: self.train_rows or None]
        self._train(lm, teacher, pairs, ctx)
        return lm

    def _batches(self, lm, pairs):
        tok = lm.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        for start in range(0, len(pairs), self.batch_size):
            rows = []
            for prompt, response in pairs[start:start + self.batch_size]:
                p = tok(prompt, add_special_tokens=True)["input_ids"]
                r = tok(response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
                ids = (p + r)[: self.max_length]
                rows.append((ids, min(len(p), len(ids))))
            width = max(len(ids) for ids, _ in rows)
            input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
            counted = torch.zeros((len(rows), width), dtype=torch.bool)
            for i, (ids, n_prompt) in enumerate(rows):
                input_ids[i, : len(ids)] = torch.tensor(ids)
                counted[i, n_prompt: len(ids)] = True
            yield input_ids, counted

    def _train(self, lm, teacher, pairs, ctx):
        model = lm.model
        model.train()
        steps_per_epoch = math.ceil(len(pairs) / self.batch_size)
        total = max(1, int(round(steps_per_epoch * self.epochs)))
        warmup = int(self.warmup_ratio * total)
        opt = torch.optim.AdamW(model.parameters(), lr=self.lr, weight_decay=0.0)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (s + 1) / max(1, warmup) if s < warmup else
                                                  0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, total - warmup))))
        step, tokens, teacher_calls, loss_log = 0, 0, 0, []
        started = time.perf_counter()
        bar = progress(range(total), desc=f"kd ({self.objective})", unit="step")
        ticks = iter(bar)
        while step < total:
            for input_ids, counted in self._batches(lm, pairs):
                if step >= total:
                    break
                attention = input_ids.new_ones(input_ids.shape)
                student_logits = model(input_ids=input_ids.to(model.device), attention_mask=attention.to(model.device)).logits
                teacher_logits = None
                if teacher is not None:
                    with torch.no_grad():  # once per batch
                        teacher_logits = teacher.model(input_ids=input_ids.to(model.device),
                                                       attention_mask=attention.to(model.device)).logits
                    teacher_calls += 1
                gold, ignore = input_ids[:, 1:].to(model.device), ~counted[:, 1:].to(model.device)
                loss = self.loss(student_logits[:, :-1], None if teacher_logits is None else teacher_logits[:, :-1],
                                 gold, ignore)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                tokens += int(counted.sum())
                loss_log.append(loss.item())
                ctx.log_step("kd", step, {"loss": loss_log[-1], "lr": sched.get_last_lr()[0]})
                next(ticks, None)
        seconds = time.perf_counter() - started
        model.eval()
        self._facts = {"objective": self.objective, "atkd_reverse": self.atkd_reverse, "steps": step,
                       "train_pairs": len(pairs), "loss_first": loss_log[0] if loss_log else None,
                       "loss_last": loss_log[-1] if loss_log else None, "train_seconds": round(seconds, 2),
                       "response_tokens_per_s": round(tokens / seconds, 1) if seconds else None,
                       "teacher_forwards": teacher_calls, "student_layers": len(blocks(model)),
                       "teacher": (self.teacher or {}).get("name")}

    def report(self) -> dict:
        return {"family": self.family, **self._facts}

    def summary(self) -> str | None:
        f = self._facts
        if not f:
            return None
        return (f"kd ({f['objective']}): {f['steps']} steps on {f['train_pairs']} pairs, loss {f['loss_first']:.3f} -> "
                f"{f['loss_last']:.3f}, {f['response_tokens_per_s']} response tokens/s (teacher forward included)")

