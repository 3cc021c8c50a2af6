"""Sweep bookkeeping: per-job outcomes and the end-of-sweep summary.

Every job leaves one marker in its Hydra dir: results.json (done), skipped.json (an earlier
complete result with the same signature exists) or failed.json (+ traceback.txt). The
`SweepSummary` Hydra callback reads them when the sweep ends, prints done / skipped / failed
with each failure's one-line reason, and tells the CLI to exit non-zero if any job failed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from llmlab import record

SKIPPED = "skipped.json"
LAST_SUMMARY: dict[str, Any] | None = None


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


class SweepSummary(Callback):
    def on_multirun_end(self, config, **kwargs) -> None:
        global LAST_SUMMARY
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.exists():
            return
        result = outcomes(sweep_dir)
        LAST_SUMMARY = result
        lines = [f"sweep {sweep_dir}: {len(result['done'])} done, {len(result['skipped'])} skipped, "
                 f"{len(result['failed'])} failed" + (f", {len(result['incomplete'])} incomplete" if result["incomplete"] else "")]
        for job, reason in result["failed"]:
            lines.append(f"  FAILED {job}: {reason}  (traceback: {job}/traceback.txt)")
        text = "\n".join(lines)
        print(text, flush=True)
        record.atomic_write_text(sweep_dir / "sweep_summary.txt", text + "\n")
