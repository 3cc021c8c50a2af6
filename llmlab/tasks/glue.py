"""GLUE: fine-tune an encoder on a task's train set, then evaluate it on the dev set.

    task=glue task.subset=cola|sst2|mrpc|stsb|qqp|mnli|mnli_mm|qnli|rte|wnli

The encoder (model.kind: encoder) gets a fresh classification head (regression for STS-B;
llmlab.models.heads) and is fine-tuned by the shared loop (llmlab.training.finetune) with the
optimizer of the method (`Optimization`: SAM, FSAM, ...) or AdamW (`method=none`). The schedule
defaults are the FSAM release's (scripts/<task>-train.sh): 10 epochs, lr 1e-5 (RTE, STS-B 2e-5),
batch 32 (SST-2 64), 6 % warmup then polynomial decay, weight decay 0.01, Adam betas (0.9, 0.98),
eps 1e-6, no clipping, batches of similar length as fairseq makes them; `train_examples: N` trains on N examples drawn once (seeded by
`subsample_seed`, the same for every run seed), the paper's low-resource setting.

Metrics are GLUE's (llmlab.metrics.glue) on the whole dev set, computed on the model at the end of
training: that is the main number. The release instead keeps fairseq's `checkpoint_best`, chosen by
dev accuracy (STS-B: dev loss) on the same dev set it reports: with `eval_each_epoch` the dev set is
scored after every epoch and that selection is recorded beside, as `<metric>@best_epoch` (optimistic:
model selection on the reported set). The release's CoLA evaluation (scripts/cola-valid.py) also skips
the first dev line as a header, which CoLA's TSV does not have; every dev example is scored here.

A method that acts on the fine-tuned model (`FineTunedTransform`: PTQ, QAT, ZSAQ) gets it after training and
before the dev set is scored. That full-precision fine-tune is the plain AdamW one of `method=none`; with
`cache_finetune: true` it is cached by signature (model, training data, settings, seed) and shared by those rows
and the dense row. `gflops`
is the forward FLOPs of the final model on one example of `flops_length` tokens (torch's flop counter).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from llmlab.capabilities import FineTunedTransform, Optimization, is_reference
from llmlab.data import glue as data
from llmlab.errors import UserError
from llmlab.metrics.glue import glue_metrics
from llmlab.tasks.base import BatchedTask, Scores


@dataclass
class Glue(BatchedTask):
    name: ClassVar[str] = "glue"
    honours: ClassVar[tuple] = (Optimization, FineTunedTransform)
    limit_means: ClassVar[str] = "the first N dev examples (train_examples limits training)"
    main_metric: ClassVar[str] = "glue_task_score"

    subset: str = "cola"
    data_dir: str | None = None        # the official GLUE layout (<dir>/CoLA/train.tsv, dev.tsv); null: hub nyu-mll/glue
    train_examples: int | None = None  # low-resource: train on N examples drawn once (null: the whole train set)
    subsample_seed: int = 0            # the draw of those N (fixed across run seeds)
    max_length: int = 512              # tokens per example (fairseq --max-positions 512)
    epochs: float = 10.0               # scripts: --max-epoch 10
    learning_rate: float | None = None  # null: the release's per-task LR (llmlab.data.glue.SUBSETS)
    batch_size: int | None = None       # null: the release's per-task MAX_SENTENCES
    group_by_length: bool = True       # fairseq's length-sorted batches (as the release trains); false: random batches
    pad_to_max_length: bool = False    # pad every batch to max_length (HF run_glue.py's default), not to its longest
    eval_batch_size: int = 64
    eval_each_epoch: bool = True       # score dev after each epoch: the release's best-checkpoint numbers beside
    flops_length: int = 128            # `gflops`: forward FLOPs of the final model on one example of this many tokens
    cache_finetune: bool = False       # keep the plain AdamW fine-tune on disk and reuse it (rows that only quantize it)
    training: dict = field(default_factory=dict)  # other FineTuneSettings (warmup_ratio, weight_decay, ...)

    def __post_init__(self):
        self.spec = data.subset(self.subset)
        from llmlab.training.finetune import FineTuneSettings

        values = {"epochs": self.epochs, "learning_rate": self.learning_rate or self.spec.lr,
                  "batch_size": self.batch_size or self.spec.batch_size, **dict(self.training)}
        self.settings = FineTuneSettings.from_dict(values, "task.training")
        if self.train_examples is not None and int(self.train_examples) < 1:
            raise UserError(f"task.train_examples={self.train_examples} must be a positive number of examples "
                            f"(or null for the whole train set).")

    def check_data(self) -> None:
        if self.data_dir is not None:
            data.check_local(self.data_dir, self.spec)

    def check_model(self, spec: dict) -> None:
        super().check_model(spec)
        kind = (spec or {}).get("kind") or "causal"
        if kind not in ("encoder", "classifier"):
            raise UserError(f"task glue fine-tunes an encoder with a classification head; model {spec.get('name')} "
                            f"is model.kind={kind}. Use an encoder: model=minilm-l6, model=roberta-large, or "
                            f"model=hf model.path=<dir or hub id> model.kind=encoder.")

    # -- tokenizing and batching --------------------------------------------------------------
    def encode(self, tok, examples: list[dict]) -> list[dict]:
        a = [e["text_a"] for e in examples]
        b = [e["text_b"] for e in examples] if examples and examples[0]["text_b"] is not None else None
        enc = tok(a, b, truncation=True, max_length=self.max_length) if b else \
            tok(a, truncation=True, max_length=self.max_length)
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        return [{**{k: enc[k][i] for k in keys}, "labels": e["label"]} for i, e in enumerate(examples)]

    def collate(self, rows: list[dict], pad_id: int, device) -> dict:
        width = self.max_length if self.pad_to_max_length else max(len(r["input_ids"]) for r in rows)
        out = {}
        for k in ("input_ids", "attention_mask", "token_type_ids"):
            if k in rows[0]:
                fill = pad_id if k == "input_ids" else 0
                out[k] = torch.tensor([r[k] + [fill] * (width - len(r[k])) for r in rows], device=device)
        dtype = torch.float32 if self.spec.regression else torch.long
        out["labels"] = torch.tensor([r["labels"] for r in rows], dtype=dtype, device=device)
        return out

    def batch_groups(self, rows: list[dict], size: int, gen: torch.Generator) -> list[list[int]] | None:
        """fairseq's batching (the release trains with it): examples sorted by length, ties in a random order
        (SortDataset sort_order [shuffle, sizes]), cut into batches once; the batches' order is shuffled every
        epoch. None when `group_by_length` is off."""
        if not self.group_by_length:
            return None
        tiebreak = torch.randperm(len(rows), generator=gen).tolist()
        order = sorted(range(len(rows)), key=lambda i: (len(rows[i]["input_ids"]), tiebreak[i]))
        return [order[i:i + size] for i in range(0, len(order), size)]

    def loss_fn(self, model, batch: dict) -> torch.Tensor:
        """Per-example loss: cross-entropy, or squared error for regression (STS-B)."""
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        return self.loss_from_logits(logits.float(), batch["labels"])

    def loss_from_logits(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.spec.regression:
            return (logits.squeeze(-1) - labels) ** 2
        return torch.nn.functional.cross_entropy(logits, labels, reduction="none")

    # -- training, then the shared evaluation loop -----------------------------------------------
    def train_set(self) -> list[dict]:
        train = data.load(self.data_dir, self.subset if self.subset != "mnli_mm" else "mnli", "train")
        if self.train_examples and self.train_examples < len(train):
            train = random.Random(self.subsample_seed).sample(train, int(self.train_examples))
        return train

    def evaluate(self, lm, method, ctx) -> Scores:
        from llmlab.models.heads import with_head
        from llmlab.training.finetune import fine_tune
        from llmlab.training.plots import plot_losses

        with ctx.timer("evaluate/data"):
            train = self.train_set()
            self.dev = data.load(self.data_dir, self.subset, "dev")
            rows = self.encode(lm.tokenizer, train)
        self.pad_id, self.tokenizer = lm.tokenizer.pad_token_id or 0, lm.tokenizer
        self.model = with_head(lm, self.spec.num_labels, seed=ctx.seed)
        device, s = lm.device, self.settings
        gen = torch.Generator().manual_seed(ctx.seed)
        steps_per_epoch = (len(rows) + s.batch_size - 1) // s.batch_size

        groups = self.batch_groups(rows, s.batch_size, gen)

        def epoch_batches(epoch: int):
            if groups is None:  # random batches, reshuffled every epoch
                order = torch.randperm(len(rows), generator=gen).tolist()
                batches = [order[i:i + s.batch_size] for i in range(0, len(order), s.batch_size)]
            else:  # the length-sorted batches, in a new order every epoch
                batches = [groups[i] for i in torch.randperm(len(groups), generator=gen).tolist()]
            for batch in batches:
                yield self.collate([rows[j] for j in batch], self.pad_id, device)

        per_epoch: list[dict] = []

        def on_epoch_end(epoch: int) -> dict:
            if not self.eval_each_epoch:
                return {}
            scores = self.dev_scores(self.limited(self.dev, ctx.limit))
            per_epoch.append(scores)
            return scores

        def train() -> dict:
            return fine_tune(self.model, self.loss_fn, epoch_batches, steps_per_epoch, s, method=method, ctx=ctx,
                             stage=f"glue_{self.subset}", on_epoch_end=on_epoch_end, seed=ctx.seed)

        with ctx.timer("evaluate/train"):
            run, reused = self.fine_tuned(lm, method, rows, train, ctx, per_epoch)
        self.facts = {"train_examples": len(rows), "dev_examples": len(self.dev), "updates": run["updates"],
                      "train_seconds": round(run["train_seconds"], 2), "two_pass": run["two_pass"],
                      "train_examples_per_s": round(run["updates"] * s.batch_size / max(run["train_seconds"], 1e-9), 2),
                      "settings": s.__dict__, "per_epoch": per_epoch, "fine_tuned_reused": reused}
        if isinstance(method, FineTunedTransform):
            from llmlab.training.finetune import TaskData

            tok = lm.tokenizer
            task_data = TaskData(batches=epoch_batches, steps_per_epoch=steps_per_epoch, batch_size=s.batch_size,
                                 max_length=self.max_length, vocab_size=int(self.model.config.vocab_size),
                                 special_ids={"cls": tok.cls_token_id, "sep": tok.sep_token_id, "pad": self.pad_id},
                                 regression=self.spec.regression, device=device)
            with ctx.timer("evaluate/after_finetune"):
                self.model = method.after_finetune(self.model, task_data, ctx)
        optimizer = getattr(method, "label", type(method).__name__) if isinstance(method, Optimization) else "AdamW"
        path = plot_losses({f"{self.subset} ({optimizer})": run["history"]}, ctx.path("train_loss.png"),
                           title=f"GLUE {self.subset}: training loss")
        if path:
            ctx.add_artifact(path)
        scores = super().evaluate(lm, method, ctx)
        if self.flops_length:
            scores.metrics["gflops"] = self.gflops(device)
        if per_epoch and not isinstance(method, FineTunedTransform):  # (a transform's per-epoch scores are the FP model's)
            best = self.best_epoch(per_epoch)
            scores.metrics.update({f"{k}@best_epoch": v for k, v in per_epoch[best].items() if k != "dev_loss"})
            self.facts["best_epoch"] = best + 1
        return scores

    def fine_tuned(self, lm, method, rows: list[dict], train, ctx, per_epoch: list) -> tuple[dict, bool]:
        """Fine-tune (`train()`), or, with `cache_finetune`, reuse the identical fine-tune of an earlier run: the plain
        AdamW fine-tune of method=none and of every method that only acts on the fine-tuned model (FineTunedTransform:
        PTQ, QAT, ZSAQ rows share one full-precision model per task and seed). Off by default: a large encoder's
        checkpoint per (task, seed) is gigabytes. Other methods change the training, so they always train.
        Returns (the fine_tune record, reused)."""
        if not self.cache_finetune or not (is_reference(method) or isinstance(method, FineTunedTransform)):
            return train(), False
        import hashlib
        import json

        from llmlab.training.cache import TrainedCheckpoint, base_identity

        digest = hashlib.sha256(json.dumps([[r["input_ids"], r["labels"]] for r in rows]).encode()).hexdigest()[:16]
        inputs = {"base": base_identity(lm), "task": "glue", "subset": self.subset, "train": digest,
                  "settings": self.settings.__dict__, "group_by_length": self.group_by_length,
                  "pad_to_max_length": self.pad_to_max_length, "eval_each_epoch": self.eval_each_epoch,
                  "limit": ctx.limit if self.eval_each_epoch else None, "seed": ctx.seed}  # limit: per-epoch dev scores
        ckpt = TrainedCheckpoint(f"glue_{self.subset}", inputs)
        holder = type("Holder", (), {"model": self.model, "device": lm.device})()
        if ckpt.exists():
            history = ckpt.load_into(holder)
            print(f"[llmlab] glue {self.subset}: reusing the fine-tuned model {ckpt.path}", flush=True)
            record = history[-1] if history and "updates" in history[-1] else {}
            per_epoch.extend(record.get("per_epoch", []))
            return {"history": history[:-1], "updates": record.get("updates", 0), "two_pass": False,
                    "train_seconds": record.get("train_seconds", 0.0)}, True
        run = train()
        ckpt.save(holder, run["history"] + [{"updates": run["updates"], "train_seconds": run["train_seconds"],
                                             "per_epoch": list(per_epoch)}])
        return run, False

    def best_epoch(self, per_epoch: list[dict]) -> int:
        """The release's checkpoint_best: highest dev accuracy (STS-B: lowest dev loss), first on ties."""
        if self.spec.regression:
            return min(range(len(per_epoch)), key=lambda i: per_epoch[i]["dev_loss"])
        return max(range(len(per_epoch)), key=lambda i: per_epoch[i]["accuracy"])

    def gflops(self, device) -> float:
        """Forward GFLOPs of the fine-tuned model on one dev example repeated to `flops_length` tokens (the same
        input for every method, so rows compare; llmlab.models.flops counts 2 per multiply-add)."""
        from llmlab.models.flops import forward_flops

        row = self.encode(self.tokenizer, self.dev[:1])[0]
        reps = -(-self.flops_length // len(row["input_ids"]))
        batch = {k: torch.tensor([(v * reps)[:self.flops_length]], device=device)
                 for k, v in row.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        return forward_flops(self.model, batch) / 1e9

    @torch.no_grad()
    def predict(self, examples: list[dict]) -> tuple[list, float]:
        """Predicted labels (or scores) of `examples` and their summed loss."""
        self.model.eval()
        rows = self.encode(self.tokenizer, examples)
        batch = self.collate(rows, self.pad_id, next(self.model.parameters()).device)
        logits = self.model(**{k: v for k, v in batch.items() if k != "labels"}).logits.float()
        loss = float(self.loss_from_logits(logits, batch["labels"]).sum())
        preds = logits.squeeze(-1).tolist() if self.spec.regression else logits.argmax(-1).tolist()
        return preds, loss

    def dev_scores(self, dev: list[dict]) -> dict[str, float]:
        """GLUE metrics and mean loss on `dev` (batched by length for speed; the scores do not depend on it)."""
        order = sorted(range(len(dev)), key=lambda i: len(dev[i]["text_a"]) + len(dev[i]["text_b"] or ""))
        preds, loss = [None] * len(dev), 0.0
        for i in range(0, len(order), self.eval_batch_size):
            chunk = order[i:i + self.eval_batch_size]
            p, l = self.predict([dev[j] for j in chunk])
            for j, v in zip(chunk, p):
                preds[j] = v
            loss += l
        metrics = self.metrics_of(preds, [e["label"] for e in dev])
        metrics["dev_loss"] = loss / max(len(dev), 1)
        if "accuracy" not in metrics and not self.spec.regression:
            metrics["accuracy"] = glue_metrics(("accuracy",), preds, [e["label"] for e in dev])["accuracy"]
        return metrics

    def metrics_of(self, preds: list, gold: list) -> dict[str, float]:
        return glue_metrics(self.spec.metrics, preds, gold)

    # -- BatchedTask: the final dev predictions ---------------------------------------------------
    def items(self, lm, ctx) -> list[dict]:
        self.batch_size = self.eval_batch_size
        return self.dev

    def run_batch(self, lm, method, batch: list[dict], ctx) -> list[dict]:
        preds, _ = self.predict(batch)
        return [{"idx": e["idx"], "text_a": e["text_a"], "text_b": e["text_b"], "label": e["label"], "prediction": p}
                for e, p in zip(batch, preds)]

    def aggregate(self, predictions: list[dict], ctx) -> dict[str, float]:
        return self.metrics_of([p["prediction"] for p in predictions], [p["label"] for p in predictions])

    def info(self, items: list, method, ctx) -> dict[str, Any]:
        facts = dict(getattr(self, "facts", {}))
        main = self.aggregate_summary(facts)
        return {"subset": self.subset, "source": str(self.data_dir or data.HUB_ID), **facts, "summary": main}

    def aggregate_summary(self, facts: dict) -> str:
        return (f"GLUE {self.subset}: fine-tuned on {facts.get('train_examples')} examples, {facts.get('updates')} updates "
                f"in {facts.get('train_seconds')} s ({facts.get('train_examples_per_s')} examples/s); "
                f"dev {facts.get('dev_examples')} examples")
