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

import collections.abc
import dataclasses
import logging
import os
import random
import re
import time
import traceback
import types
import typing
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from llmlab import record, tracking
from llmlab.context import RunContext
from llmlab.errors import UserError

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
    from llmlab import models

    started = time.time()
    job_dir, choices, overrides, sweep_dir = hydra_facts(out_dir)
    ctx = RunContext(out_dir=job_dir, cfg=cfg)
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
            log.info("skipping: a complete result with signature %s exists at %s", sig, done)
            print(f"[llmlab] skipped (signature {sig} already complete): {done}", flush=True)
            record.write_json(ctx.path(record.SKIPPED), {"signature": sig, "result": str(done)})
            data = record.read_results(done) or {}
            data["skipped"] = True
            return data

    ctx.seed, ctx.limit = int(config["seed"]), config.get("limit")
    group = config.get("experiment_name") or (Path(sweep_dir).name if sweep_dir else None)
    run_name = "-".join(str(choices.get(k, "")) for k in ("model", "method", "task")) or job_dir.name
    tracker = tracking.start(config.get("logger") or {}, config, run_name, group, job_dir)
    ctx.tracker = tracker
    try:
        runtime = {"torch_threads": configure_threads(config.get("threads")), "launcher": launcher_name()}
        seed_everything(ctx.seed)
        method = build(cfg.method, "method", choices)  # before the model: a bad value fails in seconds
        task = build(cfg.task, "task", choices)
        seed_everything(ctx.seed)
        with ctx.timer("load_model"):
            lm = models.load(cfg.model, device=cfg.device, dtype=cfg.dtype, seed=ctx.seed)
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
        extra=ctx.extra, timings=ctx.timings, method=method.describe(), runtime=runtime, **common,
    )
    record.write_predictions(ctx.path(record.PREDICTIONS), scores.predictions)
    record.write_json(ctx.path(record.RESULTS), results)  # last: its presence means complete
    tracker.log_results(results, scores.predictions, ctx.artifacts)
    tracker.finish()
    print_summary(results, ctx)
    return results


# -- checks that turn a bad config into one clear paragraph -------------------------------------

DEVICES = re.compile(r"^(cpu|auto|mps|cuda(:\d+)?)$")


def resolve(cfg: DictConfig) -> dict:
    """The resolved config as a plain dict; interpolation and missing-value errors as UserError."""
    from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue, OmegaConfBaseException

    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as err:
        key = getattr(err, "full_key", None) or "?"
        raise UserError(f"{key} has no value (it is ??? in its config file); set it on the command line, "
                        f"e.g. {key}=<value>.") from err
    except InterpolationResolutionError as err:
        key = getattr(err, "full_key", None) or "?"
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"{key}: its value could not be resolved ({first}). Fix the ${{...}} reference in the "
                        f"override or config file (e.g. ${{oc.env:VAR,default}} for an environment variable).") from err
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        raise UserError(f"{key}: {str(err).splitlines()[0]}") from err


def check_run_settings(config: dict) -> None:
    """Run settings (seed, limit, device, dtype, rerun, threads): right type and value, or UserError."""
    def bad(key: str, want: str, example: str) -> UserError:
        return UserError(f"{key}={config.get(key)!r} is not valid: {key} must be {want}. Set e.g. {key}={example}.")

    seed = config.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise bad("seed", "an integer", "0")
    limit = config.get("limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise bad("limit", "a positive integer (examples per task) or null (all)", "100")
    if not isinstance(config.get("rerun", False), bool):
        raise bad("rerun", "true or false", "true")
    threads = config.get("threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise bad("threads", "a positive integer (torch threads per job) or null (auto: cores / parallel jobs)", "4")
    device = config.get("device", "cpu")
    if not isinstance(device, str) or not DEVICES.match(device):
        raise bad("device", "one of cpu, cuda, cuda:<index>, mps, auto", "cpu")
    from llmlab.models import DTYPES

    dtype = config.get("dtype")
    if dtype is not None and dtype not in DTYPES:
        raise bad("dtype", f"one of {', '.join(DTYPES)}", "float32")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError(f"device={device} but torch sees no CUDA GPU here (torch {torch.__version__}, "
                            f"CUDA build: {torch.version.cuda or 'no'}). Use device=cpu, or device=auto to take a "
                            f"GPU only when there is one.")


def build(node: DictConfig, group: str, choices: dict | None = None):
    """instantiate() a method/task config after checking its keys and value types against the dataclass."""
    from hydra.errors import InstantiationException
    from hydra.utils import get_class, instantiate

    values = OmegaConf.to_container(node, resolve=True)
    target = values.get("_target_")
    name = (choices or {}).get(group) or target
    if not target:
        raise UserError(f"{group} config {name!r} has no _target_ naming its class (conf/{group}/<name>.yaml).")
    try:
        cls = get_class(target)
    except Exception as err:
        raise UserError(f"{group}._target_={target} cannot be imported ({err.__cause__ or err}). "
                        f"Check the class path in conf/{group}/{name}.yaml.") from err
    check_fields(cls, values, group, name)
    try:
        return instantiate(node, _convert_="all")
    except InstantiationException as err:  # an error raised in __post_init__ keeps its own type and message
        if isinstance(err.__cause__, Exception):
            raise err.__cause__ from None
        raise


def check_fields(cls, values: dict, group: str, name: str | None = None) -> None:
    """Every key of `values` is a field of dataclass `cls`, of the field's annotated type; else UserError."""
    if not dataclasses.is_dataclass(cls):
        return
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # an annotation we cannot evaluate: check names only
        hints = {}
    where = f"conf/{group}/{name}.yaml" if name and "." not in str(name) else cls.__name__
    for key, value in values.items():
        if key.startswith("_"):
            continue
        if key not in fields:
            raise UserError(f"{group}.{key}: {cls.__name__} ({where}) has no field {key!r}. Its fields: "
                            f"{', '.join(fields) or '(none)'}.")
        tp = hints.get(key)
        if tp is not None and not _matches(value, tp):
            default = fields[key].default
            shown = "" if default is dataclasses.MISSING else f" (default {_show(default)})"
            raise UserError(f"{group}.{key}={_show(value)} is not valid: {cls.__name__}.{key} expects "
                            f"{_describe(tp)}{shown}. Set e.g. {group}.{key}={_example(tp, default)}.")


def _matches(value, tp) -> bool:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is typing.Any or isinstance(tp, typing.TypeVar):
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin is typing.Literal:
        return value in args
    if tp in (list, tuple) or origin in (list, tuple, collections.abc.Sequence):
        if not isinstance(value, (list, tuple)):
            return False
        item = args[0] if args and (origin is not tuple or (len(args) == 2 and args[1] is Ellipsis)) else None
        return item is None or all(_matches(v, item) for v in value)
    if tp is dict or origin in (dict, collections.abc.Mapping):
        if not isinstance(value, dict):
            return False
        return len(args) != 2 or all(_matches(v, args[1]) for v in value.values())
    return True  # a type we do not judge


def _describe(tp) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(_show(a) for a in args)
    if tp in (list, tuple) or origin in (list, tuple, collections.abc.Sequence):
        return f"a list of {_plural(args[0])}" if args else "a list"
    if tp is dict or origin in (dict, collections.abc.Mapping):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false",
            type(None): "null"}.get(tp, getattr(tp, "__name__", str(tp)))


def _plural(tp) -> str:
    return {int: "integers", float: "numbers", str: "strings", bool: "booleans"}.get(tp, _describe(tp))


def _show(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, str) else str(value)


def _example(tp, default) -> str:
    if default is not dataclasses.MISSING and default is not None and _matches(default, tp):
        return _show(default).strip("'")
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        tp = next((a for a in args if a is not type(None)), tp)
        origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return str(args[0])
    if tp in (list, tuple) or origin in (list, tuple):
        return "[1,2]" if args and args[0] in (int, float) else "[a,b]"
    return {int: "1", float: "0.5", str: "text", bool: "true"}.get(tp, "<value>")


# -- threads -----------------------------------------------------------------------------------

def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        return os.cpu_count() or 1


def launcher_name() -> str:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return "none"
    target = str(HydraConfig.get().launcher.get("_target_", ""))
    return target.rsplit(".", 1)[-1] or "?"


def auto_threads() -> int | None:
    """Torch threads for this job when `threads: null`: cores // parallel jobs, so jobs never oversubscribe.

    joblib launcher: n_jobs jobs share the machine; submitit: the job's cpus_per_task; the basic
    launcher (one job at a time): torch's own default (all cores).
    """
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    launcher = HydraConfig.get().launcher
    cores = cpu_cores()
    n_jobs = launcher.get("n_jobs")
    if n_jobs is not None:
        n_jobs = int(n_jobs)
        parallel = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)  # joblib: -1 = all cores
        return max(1, cores // parallel)
    cpus = launcher.get("cpus_per_task")
    if cpus:
        return int(cpus)
    return None


def configure_threads(threads: int | None) -> int:
    """Set torch's intra-op threads (`threads`, or auto_threads() when null); return the count in use."""
    import torch

    want = threads or auto_threads()
    if want:
        torch.set_num_threads(int(want))
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # for any process the job starts
            os.environ[var] = str(int(want))
    return torch.get_num_threads()


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
