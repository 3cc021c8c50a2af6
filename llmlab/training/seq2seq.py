"""Sequence-to-sequence training with transformers' Seq2SeqTrainer: translation fine-tuning, training from
scratch, and mBART's denoising pre-training, with fairseq's settings by name.

`Seq2SeqSettings` names what the official fairseq scripts set (lr, scheduler, warmup, label smoothing, dropout,
attention dropout, Adam betas/eps, weight decay, clip norm, updates); `train_seq2seq` maps them onto the Trainer:
- `lr_scheduler: inverse_sqrt` -> the Trainer's inverse_sqrt (linear warmup from 0, then lr * sqrt(warmup/step),
  fairseq's `inverse_sqrt` with warmup_init_lr 0); `polynomial` -> polynomial decay, power 1, to 0 at the last
  update (fairseq's `polynomial_decay` end_learning_rate 0);
- `clip_norm: 0` means no clipping, as in fairseq;
- label smoothing is the Trainer's (the same formula as fairseq's label_smoothed_cross_entropy, averaged per token);
- batches are `batch_size` sentences (fairseq counts `max_tokens` per GPU: the scale files say what they use).

Rows are `{"source", "target", "src", "tgt"}` (two-letter language codes; mBART's layout, llmlab.models.nmt).
`denoising_rows` makes mBART's pre-training pairs from monolingual text: text infilling with 35 % of the words
masked in spans of Poisson(3.5) lengths, each span one `<mask>` (Liu et al. 2020, §2.1; BART's `mask_length
span-poisson`, `replace_length 1`); one sentence per example, so no sentence permutation.
"""

from __future__ import annotations

import dataclasses
import random
import tempfile
from dataclasses import dataclass

import numpy as np
import torch

from llmlab.models import nmt
from llmlab.training.trainers import checked


@dataclass
class Seq2SeqSettings:
    learning_rate: float = 7e-4
    max_steps: int = 1000
    batch_size: int = 64                  # sentences per update
    warmup_steps: int = 0
    lr_scheduler: str = "inverse_sqrt"    # inverse_sqrt | polynomial | linear | constant
    label_smoothing: float = 0.1
    dropout: float = 0.1
    attention_dropout: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.98
    adam_eps: float = 1e-8
    weight_decay: float = 0.0
    clip_norm: float = 0.0                # 0: no clipping (fairseq --clip-norm 0)
    max_length: int = 128                 # tokens per side, language tag included
    logging_steps: int = 20

    @classmethod
    def from_dict(cls, values: dict | None, where: str) -> "Seq2SeqSettings":
        return checked(cls, values, where)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def set_dropout(model, dropout: float, attention_dropout: float) -> None:
    """The dropout rates of a transformers encoder-decoder, set on its modules (they read the config at build
    time): residual/activation-output dropout and attention-probability dropout."""
    for module in model.modules():
        if type(module).__name__.endswith("Attention") and isinstance(getattr(module, "dropout", None), float):
            module.dropout = attention_dropout
        elif isinstance(getattr(module, "dropout", None), float):
            module.dropout = dropout
    model.config.dropout, model.config.attention_dropout = dropout, attention_dropout


def denoising_rows(texts: list[str], lang: str, seed: int, mask_ratio: float = 0.35,
                   poisson_lambda: float = 3.5, mask_token: str = "<mask>") -> list[dict]:
    """mBART text infilling on whole words: spans of Poisson(lambda) words (at least 1) replaced by one mask
    token until `mask_ratio` of the words are covered; the target is the sentence itself."""
    rng = np.random.default_rng(seed)
    rows = []
    for text in texts:
        words = text.split()
        n_mask = int(round(len(words) * mask_ratio))
        masked = np.zeros(len(words), dtype=bool)
        while masked.sum() < n_mask:
            length = max(1, int(rng.poisson(poisson_lambda)))
            start = int(rng.integers(0, len(words)))
            masked[start:start + min(length, n_mask - int(masked.sum()))] = True
        out, prev = [], False
        for w, m in zip(words, masked):
            if m and not prev:
                out.append(mask_token)
            elif not m:
                out.append(w)
            prev = bool(m)
        rows.append({"source": " ".join(out), "target": text, "src": lang, "tgt": lang})
    return rows


class _Rows(torch.utils.data.Dataset):
    def __init__(self, lm, rows: list[dict], max_length: int):
        self.items = [nmt.example(lm, r["source"], r["target"], r["src"], r["tgt"], max_length) for r in rows]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def train_seq2seq(lm, rows: list[dict], settings: Seq2SeqSettings, ctx=None, stage: str = "train",
                  seed: int = 0) -> list[dict]:
    """Train `lm.model` in place on `rows` for `settings.max_steps` updates; returns the Trainer's log history
    (the per-step losses also go to `ctx.log_step(stage, ...)`)."""
    from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments

    from llmlab.training.callbacks import StepLogger

    random.Random(seed).shuffle(rows := list(rows))
    data = _Rows(lm, rows, settings.max_length)
    set_dropout(lm.model, settings.dropout, settings.attention_dropout)
    scheduler = {"polynomial": "polynomial", "inverse_sqrt": "inverse_sqrt"}.get(settings.lr_scheduler,
                                                                                   settings.lr_scheduler)
    extra = {"lr_scheduler_kwargs": {"lr_end": 0.0, "power": 1.0}} if scheduler == "polynomial" else {}
    pad = lm.tokenizer.pad_token_id
    with tempfile.TemporaryDirectory() as tmp:
        args = Seq2SeqTrainingArguments(
            output_dir=tmp, max_steps=settings.max_steps, per_device_train_batch_size=settings.batch_size,
            learning_rate=settings.learning_rate, lr_scheduler_type=scheduler, warmup_steps=settings.warmup_steps,
            label_smoothing_factor=settings.label_smoothing, adam_beta1=settings.adam_beta1,
            adam_beta2=settings.adam_beta2, adam_epsilon=settings.adam_eps, weight_decay=settings.weight_decay,
            max_grad_norm=settings.clip_norm, logging_steps=settings.logging_steps, save_strategy="no",
            report_to=[], seed=seed, data_seed=seed, use_cpu=lm.device.type == "cpu", disable_tqdm=True,
            dataloader_num_workers=0, remove_unused_columns=False, **extra)
        trainer = Seq2SeqTrainer(model=lm.model, args=args, train_dataset=data,
                                 data_collator=lambda b: nmt.collate(b, pad),
                                 callbacks=[StepLogger(ctx, stage)] if ctx is not None else [])
        trainer.train()
    lm.model.eval()
    return [dict(h) for h in trainer.state.log_history]
