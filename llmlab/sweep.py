"""Sweep bookkeeping: per-job outcomes and the end-of-sweep summary.

Every job leaves one marker in its Hydra dir: results.json (done), skipped.json (an earlier
complete result with the same signature exists) or failed.json (+ traceback.txt). The
`SweepSummary` Hydra callback reads them when the sweep ends, prints done / skipped / failed
with each failure's one-line reason, and tells the CLI to exit non-zero if any job failed.
It runs in the launching process, so it sees jobs run by any launcher (basic, joblib processes,
submitit local or SLURM) through the files they left.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from llmlab import record

SKIPPED = record.SKIPPED
LAST_SUMMARY: dict[str, Any] | None = None  # set by SweepSummary.on_multirun_end (in the launching process)
CURRENT_SWEEP_DIR: str | None = None  # set when a sweep starts, so the CLI can summarize a sweep that crashed


def outcomes(sweep_dir: Path) -> dict[str, list]:
    out: dict[str, list] = {"done": [], "skipped": [], "failed": [], "incomplete": []}
    for job in sorted((p for p in Path(sweep_dir).iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)):
        if record.read_results(job / record.RESULTS) is not None:
            out["done"].append(str(job))
        elif (job / SKIPPED).exists():
            out["skipped"].append(str(job))
        elif (job / record.FAILED).exists():
            try:
                reason = json.loads((job / record.FAILED).read_text()).get("error", "?")
            except ValueError:
                reason = "failed.json unreadable"
            out["failed"].append((str(job), reason.splitlines()[0] if reason else "?"))
        else:
            out["incomplete"].append(str(job))
    return out


def summarize(sweep_dir: Path) -> tuple[str, dict[str, list]]:
    """The end-of-sweep text (counts, then one line per failed or unfinished job) and the outcomes."""
    result = outcomes(sweep_dir)
    lines = [f"sweep {sweep_dir}: {len(result['done'])} done, {len(result['skipped'])} skipped, "
             f"{len(result['failed'])} failed" + (f", {len(result['incomplete'])} incomplete" if result["incomplete"] else "")]
    for job, reason in result["failed"]:
        lines.append(f"  FAILED {job}: {reason}  (traceback: {job}/traceback.txt)")
    for job in result["incomplete"]:
        lines.append(f"  INCOMPLETE {job}: no result (killed, or never started); a re-run redoes it")
    return "\n".join(lines), result


class SweepSummary(Callback):
    """Runs in the launching process, whatever the launcher (jobs may run in other processes or nodes)."""

    def on_multirun_start(self, config, **kwargs) -> None:
        global CURRENT_SWEEP_DIR
        CURRENT_SWEEP_DIR = str(config.hydra.sweep.dir)

    def on_multirun_end(self, config, **kwargs) -> None:
        global LAST_SUMMARY
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.exists():
            return
        text, result = summarize(sweep_dir)
        LAST_SUMMARY = result
        print(text, flush=True)
        record.atomic_write_text(sweep_dir / "sweep_summary.txt", text + "\n")
