"""SFT and ORPO on an LM in place, with TRL; settings from a method's YAML.

Examples are `{"prompt": str, "answer": str}`. With `chat` (and a tokenizer that has a chat
template) they become TRL conversational prompt/completion rows — the prompt as the user turn,
the answer as the assistant turn — so the loss is on the assistant turn only (TRL
`completion_only_loss`, the role of the official code's DataCollatorForCompletionOnlyLM); without
a template the prompt is plain text and the completion is " " + answer (the evaluation tasks
score `prompt + " " + target` then). Preference pairs are `{"prompt", "chosen", "rejected"}`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import tempfile
from dataclasses import dataclass
from typing import Any

import torch

from llmlab.errors import UserError

log = logging.getLogger(__name__)


@dataclass
class TrainSettings:
    """Trainer settings (TRL/transformers names). `max_steps > 0` caps the run (cpu scale)."""

    learning_rate: float = 1e-5
    epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 1
    grad_accum: int = 1
    global_batch_size: int | None = None  # examples per optimizer step over every process: sets grad_accum
    eval_fraction: float = 0.0  # held-out share of the data: evaluated every eval_steps, best model kept at the end
    eval_steps: int = 100
    max_prompt_length: int | None = None  # ORPO: prompt tokens kept
    warmup_ratio: float = 0.0
    warmup_steps: int = 0
    weight_decay: float = 0.0
    lr_scheduler: str = "cosine"
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    max_length: int = 1024
    max_grad_norm: float = 1.0
    bf16: bool = False
    gradient_checkpointing: bool = False
    logging_steps: int = 1
    report_to: str = "none"  # "wandb" mirrors the loss curves to W&B
    beta: float = 0.1  # ORPO only: weight of the odds-ratio term

    @classmethod
    def from_dict(cls, values: dict | None, where: str) -> "TrainSettings":
        return checked(cls, values, where)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def checked(cls, values: dict | None, where: str):
    """A settings dataclass from a config dict; an unknown key is refused naming the known ones."""
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(cls)}
    bad = sorted(set(values) - known)
    if bad:
        raise UserError(f"{where}: unknown setting(s) {', '.join(bad)}; known: {', '.join(sorted(known))}.")
    return cls(**values)


def uses_chat(lm, chat: bool) -> bool:
    return bool(chat and getattr(lm.tokenizer, "chat_template", None))


def sft_rows(lm, examples: list[dict], chat: bool) -> list[dict]:
    if uses_chat(lm, chat):
        return [{"prompt": [{"role": "user", "content": e["prompt"]}],
                 "completion": [{"role": "assistant", "content": e["answer"]}]} for e in examples]
    eos = lm.tokenizer.eos_token or ""
    return [{"prompt": e["prompt"], "completion": " " + e["answer"] + eos} for e in examples]


def orpo_rows(lm, pairs: list[dict], chat: bool) -> list[dict]:
    if uses_chat(lm, chat):
        return [{"prompt": [{"role": "user", "content": p["prompt"]}],
                 "chosen": [{"role": "assistant", "content": p["chosen"]}],
                 "rejected": [{"role": "assistant", "content": p["rejected"]}]} for p in pairs]
    eos = lm.tokenizer.eos_token or ""
    return [{"prompt": p["prompt"], "chosen": " " + p["chosen"] + eos, "rejected": " " + p["rejected"] + eos}
            for p in pairs]


def accumulation(s: TrainSettings) -> int:
    """Gradient accumulation steps: `grad_accum`, or what reaches `global_batch_size` with this many processes
    (the official recipes' 8 GPUs x 1 or 4 x 2 x 16 on however many devices are here)."""
    if not s.global_batch_size:
        return s.grad_accum
    from llmlab.distributed import world_size

    per_step = s.batch_size * world_size()
    if s.global_batch_size % per_step:
        raise UserError(f"global_batch_size={s.global_batch_size} is not a multiple of batch_size x processes "
                        f"({s.batch_size} x {world_size()}); change batch_size or global_batch_size.")
    return s.global_batch_size // per_step


def _common_args(s: TrainSettings, out_dir: str, seed: int, run_name: str | None) -> dict:
    use_cuda = torch.cuda.is_available()
    evaluate = s.eval_fraction > 0
    return dict(
        output_dir=out_dir, learning_rate=s.learning_rate, num_train_epochs=s.epochs, max_steps=s.max_steps,
        per_device_train_batch_size=s.batch_size, gradient_accumulation_steps=accumulation(s),
        eval_strategy="steps" if evaluate else "no", eval_steps=s.eval_steps if evaluate else None,
        load_best_model_at_end=evaluate, metric_for_best_model="eval_loss" if evaluate else None,
        save_steps=s.eval_steps, save_total_limit=2 if evaluate else None,
        warmup_steps=s.warmup_steps or float(s.warmup_ratio), weight_decay=s.weight_decay,  # float < 1: a ratio
        lr_scheduler_type=s.lr_scheduler, adam_beta1=s.adam_beta1, adam_beta2=s.adam_beta2,
        max_grad_norm=s.max_grad_norm, bf16=bool(s.bf16 and use_cuda),
        logging_steps=s.logging_steps, save_strategy="steps" if evaluate else "no", report_to=s.report_to,
        run_name=run_name, seed=seed, data_seed=seed, use_cpu=not use_cuda, dataloader_num_workers=0,
        remove_unused_columns=True,
        **({"gradient_checkpointing": True} if s.gradient_checkpointing else {}),
    )


def _finish(lm, trainer) -> list[dict]:
    trainer.train()
    lm.model.eval()
    if hasattr(lm.model.config, "use_cache"):
        lm.model.config.use_cache = True
    return [dict(h) for h in trainer.state.log_history]


def _callbacks(ctx, stage: str | None) -> list:
    if ctx is None:
        return []
    from llmlab.training.callbacks import StepLogger

    return [StepLogger(ctx, stage or "train")]


def held_out(rows: list[dict], fraction: float, seed: int = 42) -> tuple[list[dict], list[dict]]:
    """(train, dev): `fraction` of the rows, shuffled with seed 42 (run_orpo.py shuffles with 42), held out."""
    if fraction <= 0 or len(rows) < 2:
        return rows, []
    import random

    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_dev = max(1, int(round(fraction * len(rows))))
    return [rows[i] for i in order[n_dev:]], [rows[i] for i in order[:n_dev]]


def sft(lm, examples: list[dict], settings: TrainSettings, chat: bool = True, seed: int = 0,
        run_name: str | None = None, ctx=None) -> list[dict]:
    """Fine-tune `lm.model` in place on the answers; return the Trainer log history."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    if not examples:
        raise UserError("sft: no training examples (check the method's data settings).")
    with tempfile.TemporaryDirectory(prefix="llmlab-sft-") as out:
        args = SFTConfig(**_common_args(settings, out, seed, run_name), max_length=settings.max_length,
                         completion_only_loss=True, packing=False, dataset_num_proc=None)
        trainer = SFTTrainer(model=lm.model, args=args, train_dataset=Dataset.from_list(sft_rows(lm, examples, chat)),
                             processing_class=lm.tokenizer, callbacks=_callbacks(ctx, run_name))
        return _finish(lm, trainer)


def orpo(lm, pairs: list[dict], settings: TrainSettings, chat: bool = True, seed: int = 0,
         run_name: str | None = None, ctx=None) -> list[dict]:
    """ORPO (odds-ratio preference optimization) on `lm.model` in place; return the log history."""
    import os
    import warnings

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from datasets import Dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    if not pairs:
        raise UserError("orpo: no preference pairs (every sampled answer scored the same?). "
                        "Use more prompts or samples (method.tlpo_prompts, method.samples).")
    with tempfile.TemporaryDirectory(prefix="llmlab-orpo-") as out:
        common = _common_args(settings, out, seed, run_name)
        common["remove_unused_columns"] = False
        extra = {"max_prompt_length": settings.max_prompt_length} if settings.max_prompt_length else {}
        args = ORPOConfig(**common, beta=settings.beta, max_length=settings.max_length, **extra)
        rows = orpo_rows(lm, pairs, chat)
        train, dev = held_out(rows, settings.eval_fraction)
        trainer = ORPOTrainer(model=lm.model, args=args, train_dataset=Dataset.from_list(train),
                              eval_dataset=Dataset.from_list(dev) if dev else None,
                              processing_class=lm.tokenizer, callbacks=_callbacks(ctx, run_name))
        return _finish(lm, trainer)


@torch.no_grad()
def answer_loss(lm, examples: list[dict], chat: bool = True) -> float:
    """Mean cross-entropy of the answer tokens given the prompt (the SFT objective), for checks."""
    total, count = 0.0, 0
    for e in examples:
        if uses_chat(lm, chat):
            head = lm.encode(e["prompt"], chat=True)
            ids = head + lm.encode(e["answer"], add_special_tokens=False)
        else:
            head = lm.encode(e["prompt"])
            ids = head + lm.encode(" " + e["answer"], add_special_tokens=False)
        logits = lm.model(input_ids=torch.tensor([ids], device=lm.device)).logits[0, len(head) - 1:-1]
        target = torch.tensor(ids[len(head):], device=lm.device)
        total += torch.nn.functional.cross_entropy(logits.float(), target, reduction="sum").item()
        count += len(target)
    return total / count if count else math.nan


def history_summary(history: list[dict]) -> dict[str, Any]:
    """First/last logged loss, steps and runtime of a Trainer history."""
    losses = [h["loss"] for h in history if "loss" in h]
    end = next((h for h in reversed(history) if "train_runtime" in h), {})
    return {"steps": max((h.get("step", 0) for h in history), default=0),
            "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
            "train_runtime_s": end.get("train_runtime")}
