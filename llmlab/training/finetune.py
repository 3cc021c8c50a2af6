"""The fine-tuning loop every task that trains a model shares (GLUE today; ZSAQ and MEO next).

A small loop of our own rather than transformers' Trainer: the SAM family needs two forward/backward
passes per update with the weights moved in between, and ESAM a third, gradient-free pass whose
per-example losses choose the second pass's examples; Trainer's single `training_step` does not
give that without rewriting it. The loop keeps what Trainer does that matters here:

- AdamW (decoupled weight decay; no decay on biases and LayerNorm weights, as Trainer and fairseq's
  RoBERTa recipe) with linear warmup and a polynomial (power 1) decay to 0 (fairseq
  `polynomial_decay`, which the FSAM release scripts use), or a constant lr after warmup;
- gradient accumulation over micro-batches, gradient clipping (`max_grad_norm`; 0: none, as the
  release's `--clip-norm 0.0`), bf16 autocast on a GPU;
- progress (a bar or log lines), the loss, lr and rho per `logging_steps` to train_log.csv and W&B.

The optimizer comes from the method when it has the `Optimization` capability (it wraps the base
AdamW and says `two_pass`); otherwise AdamW alone. The model computes per-example losses through
`loss_fn(model, batch) -> tensor[n]`, so ESAM can pick examples and the loop stays task-agnostic.
A module of the model that sets `aux_loss` (a scalar tensor) in its training forward, as MoE gates set
their load-balancing loss, has it added to the loss of that micro-batch (weighted by its share of the
batch); the mean per batch is logged as `aux_loss`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterable

import torch

from llmlab.errors import UserError
from llmlab.progress import progress


@dataclass
class FineTuneSettings:
    epochs: float = 10.0           # FSAM release scripts: --max-epoch 10
    learning_rate: float = 1e-5    # scripts/<task>-train.sh LR (1e-5; RTE, STS-B 2e-5)
    batch_size: int = 32           # scripts MAX_SENTENCES (SST-2: 64)
    grad_accum: int = 1            # micro-batches per batch (one update per batch)
    warmup_ratio: float = 0.06     # scripts WARMUP_UPDATES: "6 percent of the number of updates"
    schedule: str = "polynomial"   # --lr-scheduler polynomial_decay (power 1, end lr 0); or "constant"
    weight_decay: float = 0.01     # --weight-decay 0.01
    adam_beta1: float = 0.9        # --adam-betas '(0.9, 0.98)'
    adam_beta2: float = 0.98
    adam_eps: float = 1e-6         # --adam-eps 1e-06
    max_grad_norm: float = 0.0     # --clip-norm 0.0: no clipping
    bf16: bool = False             # autocast on a GPU (ignored on CPU)
    logging_steps: int = 10

    @classmethod
    def from_dict(cls, values: dict | None, where: str) -> "FineTuneSettings":
        from llmlab.training.trainers import checked

        settings = checked(cls, values, where)
        if settings.schedule not in ("polynomial", "constant"):
            raise UserError(f"{where}: schedule={settings.schedule!r}; use polynomial (fairseq polynomial_decay) or constant.")
        return settings


@dataclass
class TaskData:
    """What a task that fine-tunes offers a method acting on its fine-tuned model (llmlab.capabilities
    .FineTunedTransform): its training batches, their size and length, the vocabulary, the output kind."""
    batches: Callable[[int], Iterable[dict]]   # epoch -> batches of the task's training inputs (dicts of tensors)
    steps_per_epoch: int
    batch_size: int
    max_length: int
    vocab_size: int
    special_ids: dict                           # {"cls": id, "sep": id, "pad": id} (None where absent)
    regression: bool                            # one output (STS-B) instead of class logits
    device: object = None


def no_decay(name: str) -> bool:
    return name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name or "layernorm" in name.lower()


def base_optimizer(model, s: FineTuneSettings) -> torch.optim.Optimizer:
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in params if not no_decay(n)], "weight_decay": s.weight_decay},
              {"params": [p for n, p in params if no_decay(n)], "weight_decay": 0.0}]
    # fused: one kernel over all tensors (CPU and CUDA, torch >= 2.4), as Trainer's default adamw_torch_fused
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for _, p in params)
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=s.learning_rate,
                             betas=(s.adam_beta1, s.adam_beta2), eps=s.adam_eps, fused=fused or None)


def schedule(optimizer, s: FineTuneSettings, total: int):
    warmup = int(round(s.warmup_ratio * total))

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if s.schedule == "constant":
            return 1.0
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def take(batch: dict, index: torch.Tensor) -> dict:
    return {k: v[index] for k, v in batch.items()}


def split(batch: dict, parts: int) -> list[dict]:
    n = next(iter(batch.values())).shape[0]
    size = math.ceil(n / parts)
    return [take(batch, torch.arange(i, min(i + size, n))) for i in range(0, n, size)]


def fine_tune(model, loss_fn: Callable[[object, dict], torch.Tensor], epochs: Callable[[int], Iterable[dict]],
              steps_per_epoch: int, settings: FineTuneSettings, method=None, ctx=None, stage: str = "finetune",
              on_epoch_end: Callable[[int], dict] | None = None, seed: int = 0) -> dict:
    """Train `model` in place. `epochs(e)` yields the batches of epoch e (dicts of tensors on the model's
    device); `on_epoch_end(e)` may evaluate and returns numbers to log. Returns the history and timings."""
    from llmlab.capabilities import Optimization

    s = settings
    total = max(1, int(math.ceil(s.epochs * steps_per_epoch)))  # updates (a batch is one update; grad_accum splits it)
    base = base_optimizer(model, s)
    opt = method.optimizer(model, base, seed=seed) if isinstance(method, Optimization) else base
    two_pass = getattr(opt, "two_pass", False)
    scheduler = schedule(base, s, total)
    device_type = next(model.parameters()).device.type
    autocast = torch.autocast(device_type, dtype=torch.bfloat16, enabled=bool(s.bf16 and device_type == "cuda"))

    aux_modules = [m for m in model.modules() if hasattr(m, "aux_loss")]
    aux_window: list[float] = []

    def backward(batch: dict, per_example: bool = False) -> tuple[float, torch.Tensor | None]:
        """Forward/backward over the batch in `grad_accum` micro-batches (mean loss over the batch's examples,
        plus the modules' auxiliary losses)."""
        n = next(iter(batch.values())).shape[0]
        total_loss, losses, aux_total = 0.0, [], 0.0
        for micro in split(batch, s.grad_accum):
            with autocast:
                per = loss_fn(model, micro)
            loss = per.float().sum() / n
            aux = [m.aux_loss for m in aux_modules if m.aux_loss is not None]
            if aux:
                share = per.shape[0] / n
                aux_sum = torch.stack([a.float() for a in aux]).sum() * share
                loss = loss + aux_sum
                aux_total += float(aux_sum.detach())
            loss.backward()
            total_loss += float(per.detach().float().sum())
            if per_example:
                losses.append(per.detach().float())
        if aux_modules:
            aux_window.append(aux_total)
        return total_loss / n, (torch.cat(losses) if per_example else None)

    @torch.no_grad()
    def losses_at(batch: dict) -> torch.Tensor:
        with autocast:
            return torch.cat([loss_fn(model, micro).float() for micro in split(batch, s.grad_accum)])

    history: list[dict] = []
    step, started, window, eval_seconds = 0, time.perf_counter(), [], 0.0
    model.train()
    n_epochs = int(math.ceil(s.epochs))
    for epoch in range(n_epochs):
        limit = steps_per_epoch if epoch + 1 <= s.epochs else int(round((s.epochs - epoch) * steps_per_epoch))
        batches = (b for i, b in zip(range(limit), epochs(epoch)))
        for batch in progress(batches, desc=f"{stage} epoch {epoch + 1}/{n_epochs}", unit="update", total=limit):
            loss, before = backward(batch, per_example=two_pass and opt.selects_examples)
            if two_pass:
                lr = base.param_groups[0]["lr"]
                opt.perturb(step, lr)
                second = batch
                if opt.selects_examples:
                    index = opt.select(before, losses_at(batch))
                    second = batch if index is None else take(batch, index)
                opt.zero_grad()
                backward(second)
                opt.restore()
            if s.max_grad_norm and s.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), s.max_grad_norm)
            opt.step()
            scheduler.step()
            opt.zero_grad()
            step += 1
            window.append(loss)
            if step % s.logging_steps == 0 or step == total:
                entry = {"step": step, "epoch": epoch + 1, "loss": sum(window) / len(window),
                         "lr": scheduler.get_last_lr()[0]}
                if two_pass:
                    entry["rho"] = float(opt.rho_t)
                if aux_window:
                    entry["aux_loss"] = sum(aux_window) / len(aux_window)
                history.append(entry)
                window, aux_window[:] = [], []
                if ctx is not None:
                    ctx.log_step(stage, step, {k: v for k, v in entry.items() if k != "step"})
        if on_epoch_end is not None:
            t0 = time.perf_counter()
            scores = on_epoch_end(epoch) or {}
            eval_seconds += time.perf_counter() - t0
            model.train()
            if scores:
                history.append({"step": step, "epoch": epoch + 1, **{f"eval_{k}": v for k, v in scores.items()}})
                if ctx is not None:
                    ctx.log_step(f"{stage}/eval", step, scores)
    model.eval()
    seconds = time.perf_counter() - started - eval_seconds
    return {"history": history, "updates": step, "train_seconds": seconds, "eval_seconds": eval_seconds,
            "two_pass": two_pass}
