"""One job, top to bottom: instantiate method and task, load the model, run, record, log.

    method = instantiate(cfg.method)     # fields checked against the dataclass first
    task   = instantiate(cfg.task)
    lm     = models.load(cfg.model)
    lm     = method.prepare(lm, ctx)
    scores = task.evaluate(lm, method, ctx)
    record results.json + predictions.jsonl, mirror to W&B

The runner knows no method or task by name. A job whose config signature already has a
complete result is skipped (unless rerun=true; skipped.json points at the result); a job that
raises is recorded as failed (failed.json + traceback.txt) and the error re-raised for the
caller to report. Before any work, the run settings and the method/task fields are checked
against their types, so a bad value fails in one clear paragraph naming the field.
"""

from __future__ import annotations

import logging
import random
import time
import traceback
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from llmlab import distributed, record, tracking
from llmlab.checks import build, check_run_settings, resolve
from llmlab.threads import configure_threads, launcher_name
from llmlab.context import RunContext

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def hydra_facts(out_dir: Path | None) -> tuple[Path, dict, list[str], str | None]:
    """The job's output dir, group choices, overrides and sweep dir (when run under Hydra)."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        hc = HydraConfig.get()
        choices = {k: v for k, v in hc.runtime.choices.items() if not k.startswith("hydra/") and v is not None}
        sweep = str(hc.sweep.dir) if str(hc.mode) == "RunMode.MULTIRUN" else None
        overrides = [str(o) for o in OmegaConf.to_container(hc.overrides.task, resolve=False)]  # as typed
        return Path(hc.runtime.output_dir), choices, overrides, sweep
    return Path(out_dir or "outputs/adhoc"), {}, [], None


def run(cfg: DictConfig, out_dir: Path | None = None) -> dict:
    """Run one job; return its results dict (or the existing one when skipped)."""
    started = time.time()
    job_dir, choices, overrides, sweep_dir = hydra_facts(out_dir)
    ctx = RunContext(out_dir=job_dir, cfg=cfg, overrides=overrides)
    common = dict(sig=None, config=OmegaConf.to_container(cfg, resolve=False), choices=choices,
                  overrides=overrides, out_dir=job_dir, started=started)
    try:  # a config that cannot be resolved or has a bad run setting is a failed job too
        config = resolve(cfg)
        check_run_settings(config)
    except BaseException as err:
        _record_failure(ctx, common, err)
        raise
    sig = record.signature(config)
    common.update(sig=sig, config=config)
    if not config.get("rerun", False):
        done = record.find_complete(sig, Path(config["output_root"]))
        if done is not None:
            record.write_json(ctx.path(record.SKIPPED), {"signature": sig, "result": str(done),
                                                         "experiment_name": config.get("experiment_name")})
            data = record.read_results(done) or {}
            print(f"[llmlab] skipped: a complete result with this config (signature {sig}) exists; rerun=true "
                  f"runs it again. Its scores:", flush=True)
            print_summary(data, None, (data.get("method_info") or {}).get("summary"))
            data["skipped"] = True
            return data

    ctx.seed, ctx.limit = int(config["seed"]), config.get("limit")
    group = config.get("experiment_name") or (Path(sweep_dir).name if sweep_dir else None)
    run_name = "-".join(str(choices.get(k, "")) for k in ("model", "method", "task")) or job_dir.name
    main = distributed.is_main()  # under accelerate/torchrun: rank 0 evaluates, records and logs
    try:  # before the tracker and the model: a bad value, an incompatible method or missing data fails in seconds
        method = build(cfg.method, "method", choices)
        task = build(cfg.task, "task", choices)
        with ctx.timer("check"):  # an incompatible method, missing data or a model without logits
            method.check()
            task.check(method)
            task.check_model(config["model"])
            method.check_model(config["model"])
            from llmlab.models import depth

            depth.check(config["model"])  # keep_layers
    except BaseException as err:
        _record_failure(ctx, common, err)
        raise
    from llmlab import models  # transformers: only once the run is known to be valid

    tracker = tracking.start(config.get("logger") or {} if main else {}, config, run_name, group, job_dir)
    ctx.tracker = tracker
    try:
        runtime = {"torch_threads": configure_threads(config.get("threads")), "launcher": launcher_name()}
        seed_everything(ctx.seed)
        with ctx.timer("load_model"):
            lm = models.load(cfg.model, device=cfg.device, dtype=cfg.dtype, seed=ctx.seed)
        with ctx.timer("prepare"):
            lm = method.prepare(lm, ctx)
        if not main:
            print(f"[llmlab] rank {distributed.rank()}/{distributed.world_size()}: prepare done; "
                  f"rank 0 evaluates and records", flush=True)
            return {"status": "prepared", "rank": distributed.rank(), "signature": sig}
        seed_everything(ctx.seed)
        with ctx.timer("evaluate"):
            scores = task.evaluate(lm, method, ctx)
    except BaseException as err:
        _record_failure(ctx, common, err)
        tracker.finish(failed=True)
        raise
    ctx.timings["total"] = time.time() - started
    if isinstance(getattr(lm, "usage", None), dict):  # a backend's own counts (API requests vs cached answers)
        runtime["model_usage"] = dict(lm.usage)
    summary = method.summary()
    results = record.build_results(
        status="complete", metrics=scores.metrics, main_metric=scores.main_metric, info=scores.info,
        extra=ctx.extra, timings=ctx.timings, method={**method.report(), **({"summary": summary} if summary else {})},
        runtime=runtime, **common,
    )
    record.write_predictions(ctx.path(record.PREDICTIONS), scores.predictions)
    record.write_json(ctx.path(record.RESULTS), results)  # last: its presence means complete
    tracker.log_results(results, scores.predictions, ctx.artifacts)
    tracker.finish()
    print_summary(results, ctx, summary)
    return results


def _record_failure(ctx: RunContext, common: dict, err: BaseException) -> None:
    try:
        tb = "".join(traceback.format_exception(type(err), err, err.__traceback__))
        record.atomic_write_text(ctx.path("traceback.txt"), tb)
        failed = record.build_results(status="failed", extra=ctx.extra, timings=ctx.timings,
                                      error=f"{type(err).__name__}: {err}", **common)
        record.write_json(ctx.path(record.FAILED), failed)
    except Exception:  # pragma: no cover - recording a failure must not mask it
        log.exception("could not record the failure")


def print_summary(results: dict, ctx: RunContext | None, method_line: str | None = None) -> None:
    """The metrics table, timings, the method's and the task's one-line summaries, and the files."""
    import sys

    from rich.console import Console
    from rich.table import Table

    # off a terminal (a log, CI) rich would wrap long paths at 80 columns: print them whole
    console = Console(stderr=False, highlight=False, soft_wrap=not sys.stdout.isatty())
    ch = results["choices"]
    table = Table(title=f"{ch.get('method', '?')} · {ch.get('task', '?')} · {ch.get('model', '?')}", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in results["metrics"].items():
        star = " *" if name == results.get("main_metric") else ""
        table.add_row(name + star, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)
    timings = ", ".join(f"{k} {v:.1f}s" for k, v in results.get("timings_s", {}).items())
    console.print(f"time: {timings}; peak RSS {results.get('memory', {}).get('peak_rss_mib', 0):.0f} MiB")
    for line in (method_line, (results.get("info") or {}).get("summary")):
        if line:
            console.print(line)
    out_dir = Path(results.get("out_dir") or (ctx.out_dir if ctx else "."))
    console.print(f"results: {out_dir / record.RESULTS}")
    for path in (ctx.artifacts if ctx else sorted(out_dir.glob("*.png"))):
        console.print(f"plot: {path}")
