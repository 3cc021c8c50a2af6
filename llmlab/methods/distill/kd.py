"""Distillation as a method: the composed model is the student, `teacher` (a model config from the
`model` group) the teacher; training happens in `prepare` (ATKD release: distill/train.py,
distill_trainer.py), so any task then evaluates the student.

Sequences (`sample_source`, the release's `--sample_source`, distill_trainer.py `training_step`):
- `gt`: the training set's gold responses (off-policy; the release's default script);
- `student`: the student's own greedy continuation of each prompt, regenerated every batch from its current
  weights (on-policy, as GKD), at most `max_new_tokens` (the release: 256), loss on the generated tokens;
- `mix_request`: per batch, the student's continuations with probability 0.5 (`student_request_ratio`), the gold
  responses otherwise (the release's `mix_request_gt`; its `mix_request_teacher` runs the same code);
- `mix_token`: one continuation built token by token, each next token the student's or the teacher's argmax with
  probability 0.5 (`student_token_ratio`), at most 128 new tokens (the release's `mix_token`).
The teacher's logits are computed once per batch under no_grad, the student's with gradients, and the
loss is one of `losses.OBJECTIVES` (forward, reverse, jsd, tvd, dkd), ATKD (`objective=atkd`), or
plain cross-entropy (`objective=sft`: the no-KD row); `objective=none` trains nothing (the student as loaded).
Training defaults are distillation.sh's:
AdamW lr 2e-5, weight decay 0, 3 epochs, cosine schedule with 3 % warmup, max length 512.
Objectives `atkd` and `atkd_reverse` are ATKD on forward KL (the release's default) and on reverse KL (its
`--setting reverse`). A smaller student of the teacher's tokenizer can be made from the same checkpoint with the
model config's `keep_layers` (models/depth.py), for the student and for the teacher alike.
The teacher's mean uncertainty on the gold token (UnC = 1 - p_gold, the quantity behind the paper's
teacher-size finding) over the trained tokens is recorded as `teacher_unc`.
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
from llmlab.models.anatomy import blocks, parameter_count
from llmlab.progress import progress

OBJECTIVE_NAMES = ("none", "sft", "forward", "reverse", "jsd", "tvd", "dkd", "atkd", "atkd_reverse")
SAMPLE_SOURCES = ("gt", "student", "mix_request", "mix_token")


def alpaca_rows(path: Path) -> list[tuple[str, str]]:
    """(prompt, response) pairs of a Self-Instruct seed file (instruction, instances[input, output]), of an
    instruction jsonl (instruction, input, output), or of one JSON list of such rows (alpaca_gpt4_data.json, the
    release's training data), in the prompt format of ATKD inference.py."""
    text = path.read_text(encoding="utf-8")
    rows = json.loads(text) if text.lstrip().startswith("[") else [json.loads(line) for line in text.splitlines()
                                                                      if line.strip()]
    pairs = []
    for row in rows:
        for inst in row.get("instances") or [{"input": row.get("input", ""), "output": row["output"]}]:
            pairs.append((prompt_for(row["instruction"], inst.get("input")), inst["output"]))
    return pairs


@dataclass
class Distill(Method, WeightTransform):
    name: ClassVar[str] = "kd"
    family: ClassVar[str] = "distill"

    teacher: dict = field(default_factory=dict)   # a model config (method defaults: /model@method.teacher)
    objective: str = "atkd"                       # none | sft | forward | reverse | jsd | tvd | dkd | atkd | atkd_reverse
    alpha: float = losses.ALPHA                   # distill/train.py: alpha 0.2 (ATKD easy weight; DKD TCKD weight)
    beta: float = losses.BETA                     # distill/train.py: beta 1.0 (DKD NCKD weight)
    train_path: str | None = None                 # instruction data: Self-Instruct seed tasks or (instruction, input, output) jsonl
    train_rows: int | None = None                 # use the first N (prompt, response) pairs
    epochs: float = 3.0                           # distillation.sh: --num_train_epochs 3
    lr: float = 2e-5                              # distillation.sh: --learning_rate 2e-5
    batch_size: int = 4                           # distillation.sh: per-device batch x 2 accumulation (GPUs vary)
    warmup_ratio: float = 0.03                    # distillation.sh: --warmup_ratio 0.03, cosine
    max_length: int = 512                         # distillation.sh: --model_max_length 512
    sample_source: str = "gt"                     # gt | student | mix_request | mix_token (distill_trainer.py)
    max_new_tokens: int = 256                     # training_step: max_new_tokens 256 (mix_token: 128)
    mix_ratio: float = 0.5                        # student_request_ratio / student_token_ratio 0.5
    cache_trained: bool = True                    # reuse a student trained with the same inputs (training/cache.py)
    _facts: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self):
        if self.objective not in OBJECTIVE_NAMES:
            raise UserError(f"kd: objective={self.objective!r} is not one of {', '.join(OBJECTIVE_NAMES)}.")
        if self.sample_source not in SAMPLE_SOURCES:
            raise UserError(f"kd: sample_source={self.sample_source!r} is not one of {', '.join(SAMPLE_SOURCES)} "
                            f"(the release's --sample_source: gt, student, mix_request_gt/_teacher, mix_token).")
        if self.sample_source == "mix_token" and self.objective == "sft":
            raise UserError("kd: sample_source=mix_token builds sequences from the teacher's tokens too; objective=sft "
                            "has no teacher. Use another objective or sample_source=gt/student.")

    def check(self) -> None:
        if not self.train_path:
            raise UserError("kd: no training data. Set method.train_path=<file>: Self-Instruct seed tasks (e.g. "
                            "../shared/data/instruct_train/self_instruct_seed_tasks.jsonl), instruction/input/output "
                            "rows (jsonl), or the release's alpaca_gpt4_data.json (one JSON list).")
        if not Path(str(self.train_path)).expanduser().is_file():
            raise UserError(f"kd: method.train_path={self.train_path} does not exist.")
        from llmlab.models import depth

        depth.check(self.teacher)

    # -- the loss -----------------------------------------------------------------------------
    def loss(self, student_logits, teacher_logits, gold, ignore):
        if self.objective == "sft":
            ce = nn.functional.cross_entropy(student_logits.float().flatten(0, 1), gold.flatten(), reduction="none")
            return (ce * (~ignore).flatten()).sum() / (~ignore).sum().clamp(min=1)
        if self.objective in ("atkd", "atkd_reverse"):
            return losses.atkd(student_logits, teacher_logits, gold, ignore, self.alpha,
                               reverse=self.objective == "atkd_reverse")
        if self.objective == "dkd":
            return losses.dkd(student_logits, teacher_logits, gold, ignore, self.alpha, self.beta)
        return losses.OBJECTIVES[self.objective](student_logits, teacher_logits, gold, ignore)

    # -- training -----------------------------------------------------------------------------
    def prepare(self, lm, ctx):
        from llmlab import models

        if self.objective == "none":   # the student as loaded: the row every training row is read against
            self._facts = {"objective": "none", "steps": 0, "student_layers": len(blocks(lm.model)),
                           "student_params": parameter_count(lm.model)}
            return lm
        if self.objective != "sft" and not self.teacher:
            raise UserError("kd: no teacher. Compose one from the model group: method.teacher=<model config> "
                            "(conf/method/kd.yaml: `/model@teacher: smollm2-135m`).")
        pairs = alpaca_rows(Path(str(self.train_path)).expanduser())[: self.train_rows or None]

        def train():
            teacher = None
            if self.objective != "sft":
                teacher = models.load(self.teacher, device=str(lm.model.device), seed=ctx.seed)
                if teacher.tokenizer.get_vocab() != lm.tokenizer.get_vocab():
                    raise UserError(f"kd: the teacher {teacher.spec.get('name')} and the student {lm.spec.get('name')} "
                                    f"have different tokenizers; distillation compares their distributions token by "
                                    f"token, so both must share one vocabulary (choose a teacher of the student's family).")
                teacher.model.eval()
            self._train(lm, teacher, pairs, ctx)
            return [dict(self._facts)]

        from llmlab.training.cache import base_identity, file_digest, train_once

        settings = {k: getattr(self, k) for k in ("objective", "alpha", "beta", "train_rows", "epochs", "lr", "batch_size",
                                                  "warmup_ratio", "max_length", "sample_source", "max_new_tokens",
                                                  "mix_ratio")}
        inputs = {"student": base_identity(lm), "teacher": dict(self.teacher or {}) if self.objective != "sft" else None,
                  "data": file_digest([Path(str(self.train_path)).expanduser()]), "settings": settings, "seed": ctx.seed}
        history, reused, ckpt = train_once(ctx, lm, f"kd-{self.objective}", inputs, train, use_cache=self.cache_trained)
        if reused:   # the facts of the run that trained it
            self._facts = {**history[0], "reused": True, "checkpoint": str(ckpt.path)}
        lm.model.eval()
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
            yield input_ids, counted, [ids[:n] for ids, n in rows]

    @torch.no_grad()
    def _sampled(self, lm, teacher, prompts: list[list[int]], source: str):
        """(input_ids, counted, attention) of continuations of the left-padded `prompts`: the student's greedy ones
        (`student`) or the token-by-token student/teacher mix (`mix_token`); counted: the generated tokens."""
        tok, model = lm.tokenizer, lm.model
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, width - len(p):] = torch.tensor(p)
            mask[i, width - len(p):] = 1
        ids, mask = ids.to(model.device), mask.to(model.device)
        was_training = model.training
        model.eval()
        try:
            if source == "student":
                out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=self.max_new_tokens,
                                     do_sample=False, pad_token_id=pad, eos_token_id=tok.eos_token_id)
            else:
                out = self._mix_token(model, teacher.model, ids, mask, min(128, self.max_new_tokens), tok.eos_token_id)
        finally:
            model.train(was_training)
        new = out[:, width:]
        alive = torch.ones(len(prompts), dtype=torch.bool, device=out.device)
        counted = torch.zeros_like(out, dtype=torch.bool)
        for j in range(new.shape[1]):   # generated tokens up to and including each row's first eos
            counted[:, width + j] = alive
            alive &= new[:, j].ne(tok.eos_token_id)
        attention = torch.cat([mask, counted[:, width:].long()], dim=1)
        return out.cpu(), counted.cpu(), attention.cpu()

    def _mix_token(self, student, teacher, ids, mask, max_new: int, eos: int):
        """distill_trainer.py `get_mix_generated_ids`: each next token is the student's or the teacher's argmax
        (its tau 0.001 softmax), one coin per step for the whole batch, both models' caches fed the chosen token."""
        import random

        from transformers import DynamicCache

        rng = random.Random(self._mix_seed)
        self._mix_seed += 1
        cache_s, cache_t = DynamicCache(config=student.config), DynamicCache(config=teacher.config)
        cur, att = ids, mask
        out = ids
        for _ in range(max_new):
            s = student(input_ids=cur, attention_mask=att, cache=cache_s, use_cache=True)
            t = teacher(input_ids=cur, attention_mask=att, cache=cache_t, use_cache=True)
            logits = s.logits if rng.random() < self.mix_ratio else t.logits
            nxt = logits[:, -1, :].argmax(-1, keepdim=True)
            out = torch.cat([out, nxt], dim=1)
            att = torch.cat([att, att.new_ones(att.shape[0], 1)], dim=1)
            cur = nxt
            if bool((out[:, ids.shape[1]:] == eos).any(1).all()):
                break
        return out

    def _train(self, lm, teacher, pairs, ctx):
        model = lm.model
        model.train()
        steps_per_epoch = math.ceil(len(pairs) / self.batch_size)
        total = max(1, int(round(steps_per_epoch * self.epochs)))
        warmup = int(self.warmup_ratio * total)
        opt = torch.optim.AdamW(model.parameters(), lr=self.lr, weight_decay=0.0)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (s + 1) / max(1, warmup) if s < warmup else
                                                  0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, total - warmup))))
        step, tokens, teacher_calls, loss_log, unc_sum, unc_n = 0, 0, 0, [], 0.0, 0
        started = time.perf_counter()
        bar = progress(range(total), desc=f"kd ({self.objective})", unit="step")
        ticks = iter(bar)
        import random

        coin, sampled_batches, sample_seconds = random.Random(ctx.seed), 0, 0.0
        self._mix_seed = ctx.seed
        while step < total:
            for input_ids, counted, prompts in self._batches(lm, pairs):
                if step >= total:
                    break
                attention = input_ids.new_ones(input_ids.shape)
                source = self.sample_source
                if source == "mix_request":
                    source = "student" if coin.random() < self.mix_ratio else "gt"
                if source != "gt":
                    t0 = time.perf_counter()
                    input_ids, counted, attention = self._sampled(lm, teacher, prompts, source)
                    sample_seconds += time.perf_counter() - t0
                    sampled_batches += 1
                student_logits = model(input_ids=input_ids.to(model.device), attention_mask=attention.to(model.device)).logits
                teacher_logits = None
                if teacher is not None:
                    with torch.no_grad():  # once per batch
                        teacher_logits = teacher.model(input_ids=input_ids.to(model.device),
                                                       attention_mask=attention.to(model.device)).logits
                    teacher_calls += 1
                gold, ignore = input_ids[:, 1:].to(model.device), ~counted[:, 1:].to(model.device)
                if teacher_logits is not None:
                    unc_sum += float(losses.uncertainty(teacher_logits[:, :-1], gold)[~ignore].sum())
                    unc_n += int((~ignore).sum())
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
        self._facts = {"objective": self.objective, "reused": False, "steps": step,
                       "train_pairs": len(pairs), "loss_first": loss_log[0] if loss_log else None,
                       "loss_last": loss_log[-1] if loss_log else None, "train_seconds": round(seconds, 2),
                       "response_tokens_per_s": round(tokens / seconds, 1) if seconds else None,
                       "teacher_forwards": teacher_calls, "student_layers": len(blocks(model)),
                       "student_params": parameter_count(model),
                       "teacher": (self.teacher or {}).get("name"), "sample_source": self.sample_source,
                       **({"teacher_layers": len(blocks(teacher.model)),
                           "teacher_params": parameter_count(teacher.model),
                           "teacher_unc": round(unc_sum / max(1, unc_n), 4)} if teacher is not None else {}),
                       "sampled_batches": sampled_batches, "sampling_seconds": round(sample_seconds, 2)}

    def report(self) -> dict:
        return {"family": self.family, **self._facts}

    def summary(self) -> str | None:
        f = self._facts
        if not f or not f["steps"]:
            return None
        return (f"kd ({f['objective']}): {f['steps']} steps on {f['train_pairs']} pairs, loss {f['loss_first']:.3f} -> "
                f"{f['loss_last']:.3f}, {f['response_tokens_per_s']} response tokens/s (teacher forward included)")

