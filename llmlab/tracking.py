"""Weights & Biases mirroring of a job. Local files are the source of truth.

One W&B run per job, grouped by experiment (or sweep). Offline unless the user turns it
online (WANDB_MODE=online or logger.mode=online). Every W&B call is guarded: a failure (no
network, no auth, a bug) warns once and never costs the local results; a failed online
start falls back to offline and says how to upload later (`wandb sync`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


class Tracker:
    def __init__(self, run=None):
        self.run = run

    def log_results(self, results: dict, predictions: list[dict], artifacts: list[Path]) -> None:
        if self.run is None:
            return
        try:
            import wandb

            self.run.summary.update({f"metrics/{k}": v for k, v in results["metrics"].items()})
            self.run.summary.update({f"timings/{k}": v for k, v in results["timings_s"].items()})
            self.run.summary.update({f"memory/{k}": v for k, v in results["memory"].items()})
            self.run.summary["signature"] = results["signature"]
            if predictions:
                columns = sorted({k for p in predictions for k in p})
                table = wandb.Table(columns=columns)
                for p in predictions:
                    table.add_data(*[_cell(p.get(c)) for c in columns])
                self.run.log({"predictions": table})
            for path in artifacts:
                if Path(path).suffix.lower() == ".png" and Path(path).exists():
                    self.run.log({Path(path).stem: wandb.Image(str(path))})
        except Exception as err:  # never lose local results to W&B
            _warn(f"W&B logging failed ({err}); local results are complete.")

    def log_step(self, stage: str, step: int, values: dict) -> None:
        """Training curves: `<stage>/<name>` against the stage's own step axis."""
        if self.run is None:
            return
        try:
            self.run.define_metric(f"{stage}/*", step_metric=f"{stage}/step")
            self.run.log({f"{stage}/step": step, **{f"{stage}/{k}": v for k, v in values.items()}})
        except Exception as err:  # never lose local results to W&B
            _warn(f"W&B step logging failed ({err}); train_log.csv has the numbers.")

    def finish(self, failed: bool = False) -> None:
        if self.run is None:
            return
        try:
            self.run.finish(exit_code=1 if failed else 0)
        except Exception as err:
            _warn(f"W&B finish failed ({err}).")


def _cell(value):
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    return str(value)


def _warn(msg: str) -> None:
    """One warning, one channel: the log (console + job.log under Hydra; stderr otherwise)."""
    log.warning(msg)


# once an online start has failed in this process (no network, no auth), later jobs of the sweep
# go straight to offline instead of waiting for the same timeout again, and warn no more
_ONLINE_FAILED = False


def start(logger_cfg: dict, config: dict, name: str, group: str | None, out_dir: Path) -> Tracker:
    """Start one W&B run for a job (or a no-op Tracker for logger=none or on failure)."""
    if not logger_cfg or logger_cfg.get("name") != "wandb":
        return Tracker(None)
    mode = logger_cfg.get("mode") or "offline"
    if mode == "disabled":
        return Tracker(None)
    try:
        import wandb
    except ImportError:
        _warn("logger=wandb but wandb is not installed; logging nothing (pip install wandb).")
        return Tracker(None)
    wandb_dir = Path(logger_cfg.get("dir") or out_dir)
    wandb_dir.mkdir(parents=True, exist_ok=True)
    kwargs = dict(project=logger_cfg.get("project", "llmlab"), entity=logger_cfg.get("entity"), name=name,
                  group=group, config=config, dir=str(wandb_dir), tags=list(logger_cfg.get("tags") or []),
                  reinit="finish_previous")
    os.environ.setdefault("WANDB_SILENT", "true")
    global _ONLINE_FAILED
    if mode == "online" and _ONLINE_FAILED:
        mode = "offline"
    try:
        return Tracker(wandb.init(mode=mode, **kwargs))
    except Exception as err:
        if mode == "online":
            _ONLINE_FAILED = True
            try:
                run = wandb.init(mode="offline", **kwargs)
                _warn(f"W&B online start failed ({_first_line(err)}); logging offline instead, local results are "
                      f"unaffected. Upload later with `wandb sync {wandb_dir / 'wandb'}/offline-run-*`.")
                return Tracker(run)
            except Exception as err2:
                err = err2
        _warn(f"W&B could not start ({_first_line(err)}); logging nothing, local results are complete.")
        return Tracker(None)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


TABLE_COLUMNS = ["group", "row", "column", "ours", "paper", "delta", "verdict"]


def log_table(name: str, group: str, rows: list[list], images: list[Path], root: Path,
              project: str = "llmlab", mode: str | None = None) -> str | None:
    """Log a rendered paper table (rows of TABLE_COLUMNS) and its plots to W&B, as a run of the
    experiment's group (job_type "table"): offline unless WANDB_MODE/mode says online. Returns a line
    saying where it went (and how to upload it), or None when W&B is off; never raises."""
    mode = mode or os.environ.get("WANDB_MODE") or "offline"
    if mode == "disabled":
        return None
    tracker = start({"name": "wandb", "mode": mode, "project": project, "dir": str(root)}, {"table": name},
                    f"table-{name}", group, Path(root))
    if tracker.run is None:
        return None
    try:
        import wandb

        table = wandb.Table(columns=TABLE_COLUMNS)
        for row in rows:
            table.add_data(*[_cell(v) for v in row])
        tracker.run.log({f"table/{name}": table})
        for path in images:
            if Path(path).suffix.lower() == ".png" and Path(path).exists():
                tracker.run.log({f"plot/{Path(path).stem}": wandb.Image(str(path))})
        run_dir = Path(tracker.run.dir).parent
        offline = tracker.run.settings.mode == "offline" if hasattr(tracker.run, "settings") else mode == "offline"
    except Exception as err:
        _warn(f"W&B table logging failed ({err}); the local table files are complete.")
        tracker.finish(failed=True)
        return None
    tracker.finish()
    if offline:
        return f"W&B: table logged offline to {run_dir} (group {group}); upload with `wandb sync {run_dir}`"
    return f"W&B: table logged to project {project}, group {group}"
