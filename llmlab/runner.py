"""One job, top to bottom: load the model, instantiate method and task, run, record, log.

    lm     = models.load(cfg.model)
    method = instantiate(cfg.method)
    task   = instantiate(cfg.task)
    lm     = method.prepare(lm, ctx)
    scores = task.evaluate(lm, method, ctx)
    record results.json + predictions.jsonl, mirror to W&B

The runner knows no method or task by name. A job whose config signature already has a
complete result is skipped (unless rerun=true); a job that raises is recorded as failed
(failed.json + traceback.txt) and the error re-raised for the caller to report.
"""

from __future__ import annotations

import logging
import random
import time
import traceback
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from llmlab import record, tracking
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
        return Path(hc.runtime.output_dir), choices, list(hc.overrides.task), sweep
    return Path(out_dir or "outputs/adhoc"), {}, [], None


def run(cfg: DictConfig, out_dir: Path | None = None) -> dict:
    """Run one job; return its results dict (or the existing one when skipped)."""
    from hydra.utils import instantiate

    from llmlab import models

    started = time.time()
    job_dir, choices, overrides, sweep_dir = hydra_facts(out_dir)
    config = OmegaConf.to_container(cfg, resolve=True)
    sig = record.signature(config)
    root = Path(cfg.output_root)
    if not cfg.get("rerun", False):
        done = record.find_complete(sig, root)
        if done is not None:
            log.info("skipping: a complete result with signature %s exists at %s", sig, done)
            print(f"[llmlab] skipped (signature {sig} already complete): {done}", flush=True)
            data = record.read_results(done) or {}
            data["skipped"] = True
            return data

    ctx = RunContext(out_dir=job_dir, seed=int(cfg.seed), limit=cfg.get("limit"), cfg=cfg)
    group = cfg.get("experiment_name") or (Path(sweep_dir).name if sweep_dir else None)
    run_name = "-".join(str(choices.get(k, "")) for k in ("model", "method", "task")) or job_dir.name
    tracker = tracking.start(config.get("logger") or {}, config, run_name, group, job_dir)
    ctx.tracker = tracker
    common = dict(sig=sig, config=config, choices=choices, overrides=overrides, out_dir=job_dir, started=started)
    try:
        seed_everything(ctx.seed)
        with ctx.timer("load_model"):
            lm = models.load(cfg.model, device=cfg.device, dtype=cfg.dtype, seed=ctx.seed)
        method = instantiate(cfg.method, _convert_="all")
        task = instantiate(cfg.task, _convert_="all")
        with ctx.timer("prepare"):
            lm = method.prepare(lm, ctx)
        seed_everything(ctx.seed)
        with ctx.timer("evaluate"):
            scores = task.evaluate(lm, method, ctx)
    except BaseException as err:
        _record_failure(ctx, common, err)
        tracker.finish(failed=True)
        raise
    ctx.timings["total"] = time.time() - started
    results = record.build_results(
        status="complete", metrics=scores.metrics, main_metric=scores.main_metric, info=scores.info,
        extra=ctx.extra, timings=ctx.timings, method=method.describe(), **common,
    )
    record.write_predictions(ctx.path(record.PREDICTIONS), scores.predictions)
    record.write_json(ctx.path(record.RESULTS), results)  # last: its presence means complete
    tracker.log_results(results, scores.predictions, ctx.artifacts)
    tracker.finish()
    print_summary(results, ctx)
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


def print_summary(results: dict, ctx: RunContext) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=False, highlight=False)
    ch = results["choices"]
    table = Table(title=f"{ch.get('method', '?')} · {ch.get('task', '?')} · {ch.get('model', '?')}", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in results["metrics"].items():
        star = " *" if name == results.get("main_metric") else ""
        table.add_row(name + star, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)
    timings = ", ".join(f"{k} {v:.1f}s" for k, v in results["timings_s"].items())
    console.print(f"time: {timings}; peak RSS {results['memory']['peak_rss_mib']:.0f} MiB")
    for key in ("kv_summary",):
        if key in ctx.extra:
            console.print(f"{key}: {ctx.extra[key]}")
    console.print(f"results: {ctx.out_dir / record.RESULTS}")
    for path in ctx.artifacts:
        console.print(f"plot: {path}")
