"""The per-run context handed to methods and tasks: where to write, seeds, limits, timings."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


TRAIN_LOG = "train_log.csv"


@dataclass
class RunContext:
    out_dir: Path
    seed: int = 0
    limit: int | None = None
    cfg: Any = None  # the resolved DictConfig of the job
    timings: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # method/task facts for results.json (e.g. KV bytes)
    artifacts: list[Path] = field(default_factory=list)  # plots and files to mirror to W&B
    tracker: Any = None  # llmlab.tracking.Tracker or None
    overrides: list[str] = field(default_factory=list)  # the job's command-line overrides (swept values)

    @contextmanager
    def timer(self, phase: str):
        """Accumulate wall time of a phase into `timings[phase]` (seconds)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[phase] = self.timings.get(phase, 0.0) + time.perf_counter() - start

    def path(self, name: str) -> Path:
        """A file path inside the job's output directory."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        return self.out_dir / name

    def add_artifact(self, path: Path) -> Path:
        self.artifacts.append(Path(path))
        return Path(path)

    def log_step(self, stage: str, step: int, values: dict[str, float]) -> None:
        """One training step's numbers (loss, learning rate, ...): rows `stage,step,name,value` of
        `train_log.csv` beside results.json, and the job's W&B run (`<stage>/<name>`)."""
        path = self.path(TRAIN_LOG)
        new = not path.exists()
        with open(path, "a", encoding="utf-8") as f:
            if new:
                f.write("stage,step,name,value\n")
            for name, value in values.items():
                f.write(f"{stage},{int(step)},{name},{float(value)!r}\n")
        if self.tracker is not None:
            self.tracker.log_step(stage, int(step), values)
