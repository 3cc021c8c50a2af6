"""Benchmark: a sweep that survives a failing job and a SIGKILL, then resumes; joblib speed-up.

    python scripts/bench_sweep.py                       # 24 jobs on tiny-llama, then joblib 2 vs 1 workers
    python scripts/bench_sweep.py --jobs 24 --timing-jobs 8 --outputs /tmp/bench

Pass 1 runs a `--jobs`-point sweep (seeds 0..N-1) of a test-only method that raises at one seed
and hangs at another; the script SIGKILLs the sweep while that job evaluates. Pass 2 runs the
same command: it must skip every complete job, redo the killed one and the ones never started,
and fail the faulty one again. Pass 3 (same command) must do nothing but skip. The counts of
done / skipped / failed (/ incomplete) after each pass are printed.

Timing: the same `--timing-jobs` sweep (rerun=true) under hydra/launcher=parallel with
n_jobs=1 and n_jobs=2; prints the wall times and their ratio. Other processes on the machine
skew this: the load average is printed beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

FAULTY = '''
import os, time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar
from llmlab.methods.base import Method


@dataclass
class Faulty(Method):
    """Benchmark-only: raises at one seed, hangs (the first time) at another, else the unmodified model."""
    name: ClassVar[str] = "faulty"
    fail_seed: int = -1
    hang_seed: int = -1
    flag_dir: str | None = None

    def prepare(self, lm, ctx):
        if ctx.seed == self.fail_seed:
            raise RuntimeError(f"injected fault at seed {ctx.seed}")
        self._seed = ctx.seed
        return lm

    @contextmanager
    def apply(self, lm):
        if self._seed == self.hang_seed and self.flag_dir:
            flag = Path(self.flag_dir) / "hung"
            if not flag.exists():
                flag.write_text(str(os.getpid()))
                time.sleep(3600)
        yield lm
'''

TASK = ["model=tiny-llama", "task=needle", "task.context_lengths=[64]", "task.depths=[0]", "task.max_new_tokens=4",
        "task.heatmap=false", "logger=none"]


def counts(sweep_dir: Path) -> dict[str, int]:
    from llmlab.sweep import outcomes

    return {k: len(v) for k, v in outcomes(sweep_dir).items()}


def newest_sweep(outputs: Path, seen: set[Path]) -> Path:
    fresh = sorted({p.parent for p in outputs.rglob("multirun.yaml")} - seen)
    return fresh[-1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=24, help="0 skips the fault/resume passes")
    ap.add_argument("--timing-jobs", type=int, default=8, help="0 skips the joblib timing")
    ap.add_argument("--timing-context", type=int, default=512, help="needle context (tokens) of each timed job")
    ap.add_argument("--outputs", type=Path, default=None, help="default: a fresh temporary directory")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="llmlab-bench-"))
    outputs = args.outputs or work / "outputs"
    (work / "plug").mkdir()
    (work / "plug" / "llmlab_bench_faults.py").write_text(FAULTY)
    (work / "conf" / "method").mkdir(parents=True)
    fail_seed, hang_seed = args.jobs // 4, (args.jobs * 3) // 4
    (work / "conf" / "method" / "faulty.yaml").write_text(
        f"# benchmark-only fault injection\n_target_: llmlab_bench_faults.Faulty\nfail_seed: {fail_seed}\n"
        f"hang_seed: {hang_seed}\nflag_dir: {work}\n")
    env = dict(os.environ, LLMLAB_OUTPUTS=str(outputs), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               PYTHONPATH=os.pathsep.join(p for p in [str(work / "plug"), os.environ.get("PYTHONPATH")] if p))
    cmd = [sys.executable, "-m", "llmlab.cli", "run", "-m", *TASK, f"hydra.searchpath=[file://{work / 'conf'}]",
           "method=faulty", "seed=" + ",".join(map(str, range(args.jobs)))]
    if args.jobs:
        print(f"sweep: {args.jobs} jobs (tiny-llama, needle 64 tokens); seed {fail_seed} raises, seed {hang_seed} is "
              f"SIGKILLed mid-evaluate; outputs {outputs}")
    seen: set[Path] = set()
    if args.jobs:
        resume_passes(cmd, env, work, outputs, seen, args.jobs)
    if args.timing_jobs:
        timing(args, env)
    return 0


def resume_passes(cmd, env, work, outputs, seen, jobs) -> None:
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    flag = work / "hung"
    while not flag.exists() and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(0.5)
    os.kill(int(flag.read_text()), signal.SIGKILL)
    proc.wait()
    sweep = newest_sweep(outputs, seen)
    seen.add(sweep)
    c = counts(sweep)
    print(f"pass 1 (killed after {time.time() - t0:.0f}s): {c['done']} done, {c['skipped']} skipped, {c['failed']} failed, "
          f"{c['incomplete']} killed mid-job, {jobs - sum(c.values())} never started")

    for n in (2, 3):
        t0 = time.time()
        res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
        sweep = newest_sweep(outputs, seen)
        seen.add(sweep)
        c = counts(sweep)
        print(f"pass {n} (same command, {time.time() - t0:.0f}s, exit {res.returncode}): {c['done']} done, "
              f"{c['skipped']} skipped, {c['failed']} failed, {c['incomplete']} incomplete")
    complete = {json.loads(p.read_text())["signature"] for p in outputs.rglob("results.json")
                if json.loads(p.read_text()).get("status") == "complete"}
    print(f"distinct complete results: {len(complete)} of {jobs} grid points (1 fails by design)")


def timing(args, env) -> None:
    task = [o for o in TASK if not o.startswith(("task.context_lengths", "task.max_new_tokens"))]
    task += [f"task.context_lengths=[{args.timing_context}]", "task.max_new_tokens=16"]
    walls = {}
    for n_jobs in (1, 2):
        cmd = [sys.executable, "-m", "llmlab.cli", "run", "-m", *task, "method=none", "rerun=true",
               "hydra/launcher=parallel", f"hydra.launcher.n_jobs={n_jobs}",
               "seed=" + ",".join(map(str, range(args.timing_jobs)))]
        load = os.getloadavg()[0]
        t0 = time.time()
        subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=True)
        walls[n_jobs] = time.time() - t0
        print(f"joblib n_jobs={n_jobs}: {args.timing_jobs} jobs (needle {args.timing_context} tokens, 16 new) in "
              f"{walls[n_jobs]:.1f}s wall (load average before: {load:.1f} on {os.cpu_count()} cores)")
    print(f"wall-time ratio n_jobs=2 / n_jobs=1: {walls[2] / walls[1]:.2f} (includes each worker's ~10 s CPU of imports)")


if __name__ == "__main__":
    sys.exit(main())
