"""Sweeps that survive: resume, failure isolation, parallel and submitit launchers, W&B fallback.

Fault injection uses a test-only method written to tmp_path (a module on PYTHONPATH plus a
method YAML found through `hydra.searchpath`): it raises at one seed and hangs at another
until the test SIGKILLs the sweep.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import LLMLAB, REPO, run_llmlab

FAULTY_MODULE = '''
"""Test-only method: raises at one seed, hangs (once) at another, else the unmodified model."""
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from llmlab.methods.base import Method


@dataclass
class Faulty(Method):
    name: ClassVar[str] = "faulty"
    fail_seed: int = -1          # prepare() raises at this seed
    hang_seed: int = -1          # evaluation hangs at this seed until killed (the first time only)
    flag_dir: str | None = None  # where the hang leaves its flag file (holding the pid)
    init_error: str | None = None  # raise this at construction (a bad hyperparameter)

    def __post_init__(self):
        if self.init_error:
            raise RuntimeError(f"bad hyperparameter: {self.init_error}")

    def prepare(self, lm, ctx):
        if ctx.seed == self.fail_seed:
            raise RuntimeError(f"injected fault at seed {ctx.seed}")
        self._seed = ctx.seed
        return lm

    @contextmanager
    def apply(self, lm):
        if self._seed == self.hang_seed and self.flag_dir:
            flag = Path(self.flag_dir) / f"hung-{self._seed}"
            if not flag.exists():
                flag.write_text(str(os.getpid()))
                time.sleep(600)
        yield lm
'''

FAST = ["model=tiny-llama", "task=needle", "task.context_lengths=[32]", "task.depths=[0]", "task.max_new_tokens=3",
        "task.heatmap=false", "logger=none"]


@pytest.fixture
def faulty(tmp_path, monkeypatch) -> tuple[list[str], dict]:
    """Overrides and env that make `method=faulty` available to a subprocess (and to this process)."""
    plug = tmp_path / "plug"
    plug.mkdir()
    monkeypatch.syspath_prepend(str(plug))
    (plug / "llmlab_faults.py").write_text(FAULTY_MODULE)
    conf = tmp_path / "conf" / "method"
    conf.mkdir(parents=True)
    (conf / "faulty.yaml").write_text("# test-only: raises at one seed, hangs once at another\n"
                                      "_target_: llmlab_faults.Faulty\nfail_seed: 1\nhang_seed: 3\ninit_error: null\n"
                                      f"flag_dir: {tmp_path}\n")
    env = {"PYTHONPATH": os.pathsep.join([str(plug), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    return [*FAST, f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "method=faulty"], env


def _jobs(sweep_dir: Path) -> dict[int, Path]:
    return {int(p.name): p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()}


def _sweep_dirs(outputs: Path) -> list[Path]:
    return sorted(p.parent for p in outputs.rglob("multirun.yaml"))


def _seed(job: Path) -> int:
    return json.loads((job / "results.json").read_text())["config"]["seed"]


def test_fault_kill_and_corruption_then_resume_does_exactly_the_missing_jobs(outputs, tmp_path, faulty, llmlab_inproc):
    overrides, env = faulty
    args = ["run", "-m", *overrides, "seed=0,1,2,3,4,5"]
    proc = subprocess.Popen(LLMLAB + args, cwd=REPO, env=dict(os.environ, LLMLAB_OUTPUTS=str(outputs), **env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    flag = tmp_path / "hung-3"
    deadline = time.time() + 400
    while not flag.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert flag.exists(), f"the hanging job never started: {proc.communicate()}"
    assert int(flag.read_text()) == proc.pid  # basic launcher: the jobs run in the sweep's own process
    os.kill(proc.pid, signal.SIGKILL)  # killed mid-evaluate, as by the OOM killer or a lost node
    _, stderr = proc.communicate(timeout=60)

    [first] = _sweep_dirs(outputs)
    jobs = _jobs(first)
    assert sorted(jobs) == [0, 1, 2, 3]  # 4 and 5 never started
    assert {_seed(jobs[0]), _seed(jobs[2])} == {0, 2}
    # the failure is recorded (error, traceback, config) and did not stop the sweep
    failed = json.loads((jobs[1] / "failed.json").read_text())
    assert failed["status"] == "failed" and failed["error"] == "RuntimeError: injected fault at seed 1"
    assert failed["config"]["seed"] == 1 and failed["config"]["method"]["fail_seed"] == 1
    assert "raise RuntimeError" in (jobs[1] / "traceback.txt").read_text()
    assert "Traceback (most recent call last)" in (jobs[1] / "job.log").read_text()
    # stderr: one paragraph for the failure, no traceback
    assert "llmlab: RuntimeError: injected fault at seed 1" in stderr and "Traceback" not in stderr
    # the killed job left nothing that looks complete
    assert not (jobs[3] / "results.json").exists() and not list(jobs[3].glob(".results.json*"))

    # a results.json damaged after the fact (truncated copy, disk trouble) counts as missing
    text = (jobs[0] / "results.json").read_text()
    (jobs[0] / "results.json").write_text(text[: len(text) // 3])

    code, stdout, stderr = llmlab_inproc(*args[1:])  # the same command again
    assert code == 1, stderr[-3000:]
    assert "4 done, 1 skipped, 1 failed" in stdout
    assert "FAILED" in stdout and "injected fault at seed 1" in stdout
    [second] = [d for d in _sweep_dirs(outputs) if d != first]
    jobs2 = _jobs(second)
    ran = sorted(_seed(j) for j in jobs2.values() if (j / "results.json").exists())
    assert ran == [0, 3, 4, 5]  # exactly the missing ones: corrupt 0, killed 3, never-started 4 and 5
    skipped = [j for j in jobs2.values() if (j / "skipped.json").exists()]
    assert len(skipped) == 1 and json.loads((skipped[0] / "skipped.json").read_text())["result"] == \
        str(jobs[2] / "results.json")
    assert (second / "sweep_summary.txt").read_text().startswith(f"sweep {second}: 4 done, 1 skipped, 1 failed")


def test_parallel_and_submitit_launchers_isolate_failures_and_match_basic(outputs, faulty, llmlab_inproc):
    overrides, env = faulty
    args = ["run", "-m", *overrides, "method.init_error=null,lr_is_zero"]  # job 1 fails before loading a model
    runs = {}
    for name, extra in [("basic", []), ("parallel", ["hydra/launcher=parallel", "rerun=true"]),
                        ("submitit_local", ["hydra/launcher=submitit_local", "+rerun=true"])]:
        before = set(_sweep_dirs(outputs))
        if name == "basic":  # in this process: the reference
            code, stdout, stderr = llmlab_inproc(*args[1:], *extra)
        else:  # jobs in worker processes, the sweep in a fresh `llmlab` process
            proc = run_llmlab(args + extra, outputs, env=env, check=False)
            code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
        # the failing job runs in another process under joblib/submitit: the exit status still says so
        assert code == 1, f"{name}: {stderr[-3000:]}"
        assert "1 done, 0 skipped, 1 failed" in stdout, f"{name}: {stdout[-2000:]}"
        [sweep] = set(_sweep_dirs(outputs)) - before
        jobs = _jobs(sweep)
        assert "RuntimeError: bad hyperparameter: lr_is_zero" in stdout  # the summary's reason line
        assert json.loads((jobs[1] / "failed.json").read_text())["error"] == "RuntimeError: bad hyperparameter: lr_is_zero"
        assert "Traceback" in (jobs[1] / "traceback.txt").read_text()
        assert "Traceback (most recent call last)" in (jobs[1] / "job.log").read_text(), name
        runs[name] = json.loads((jobs[0] / "results.json").read_text())
        runs[name]["predictions"] = (jobs[0] / "predictions.jsonl").read_text()
    cores = len(os.sched_getaffinity(0))
    assert runs["basic"]["runtime"]["launcher"] == "BasicLauncher"
    assert runs["parallel"]["runtime"] == {"torch_threads": max(1, cores // 2), "launcher": "JoblibLauncher"}
    assert runs["submitit_local"]["runtime"]["launcher"] == "LocalLauncher"
    # same config and seed, same numbers, whatever the launcher
    assert len({r["signature"] for r in runs.values()}) == 1
    for name in ("parallel", "submitit_local"):
        assert runs[name]["metrics"] == runs["basic"]["metrics"], name
        assert runs[name]["predictions"] == runs["basic"]["predictions"], name
    assert json.loads(runs["basic"]["predictions"].splitlines()[0])["prediction"]  # not an empty comparison


def test_find_complete_reads_only_heads_and_never_trusts_a_corrupt_file(tmp_path):
    from llmlab import record

    root = tmp_path / "outputs"
    body = {"status": "complete", "signature": None, "metrics": {"x": 1.0}, "config": {"pad": "y" * 3000}}
    for i in range(2000):
        path = root / "multirun" / f"{i // 100}" / str(i % 100) / "results.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(dict(body, signature=f"sig{i:05d}")))
    # a file whose head announces a signature but whose body is cut: never counts as complete
    cut = root / "z" / "results.json"
    cut.parent.mkdir()
    cut.write_text(json.dumps(dict(body, signature="wanted"))[:200])
    start = time.perf_counter()
    assert record.find_complete("wanted", root) is None
    assert record.find_complete("nothing", root) is None
    elapsed = time.perf_counter() - start
    assert record.find_complete("sig01999", root) == root / "multirun" / "19" / "99" / "results.json"
    assert elapsed < 5.0, f"two scans of 2000 results took {elapsed:.1f}s"
    record.write_json(root / "zz" / "results.json", dict(body, signature="wanted"))
    assert record.find_complete("wanted", root) == root / "zz" / "results.json"


def test_sweep_summary_lists_every_outcome(tmp_path):
    from llmlab import record, sweep

    sdir = tmp_path / "sweep"
    record.write_json(sdir / "0" / "results.json", {"status": "complete", "signature": "a"})
    record.write_json(sdir / "1" / "skipped.json", {"signature": "b", "result": "elsewhere"})
    record.write_json(sdir / "2" / "failed.json", {"status": "failed", "error": "ValueError: bad lr\nmore"})
    (sdir / "3").mkdir()  # killed: a dir with only a log
    (sdir / "3" / "job.log").write_text("started")
    (sdir / ".submitit").mkdir()
    text, result = sweep.summarize(sdir)
    assert text.splitlines()[0] == f"sweep {sdir}: 1 done, 1 skipped, 1 failed, 1 incomplete"
    assert f"FAILED {sdir / '2'}: ValueError: bad lr  (traceback: {sdir / '2'}/traceback.txt)" in text
    assert f"INCOMPLETE {sdir / '3'}" in text and len(result["done"]) == 1


def test_launcher_presets_compose(tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from llmlab.cli import CONF_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        par = compose("config", overrides=["hydra/launcher=parallel"], return_hydra_config=True).hydra.launcher
        slurm = compose("config", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                                             "hydra.launcher.gpus_per_node=2"], return_hydra_config=True).hydra.launcher
    assert par._target_.endswith("JoblibLauncher") and par.n_jobs == 2
    assert slurm._target_.endswith("SlurmLauncher") and slurm.partition == "gpu" and slurm.gpus_per_node == 2
    assert slurm.timeout_min > 0 and slurm.mem_gb > 0 and slurm.cpus_per_task > 0 and slurm.name == "llmlab"


def test_auto_threads_divide_the_cores_among_parallel_jobs(monkeypatch):
    from omegaconf import OmegaConf

    from llmlab import threads

    class FakeHydra:
        def __init__(self, launcher):
            self.launcher = OmegaConf.create(launcher)

    monkeypatch.setattr(threads, "cpu_cores", lambda: 16)
    monkeypatch.setattr("hydra.core.hydra_config.HydraConfig.initialized", staticmethod(lambda: True))
    for launcher, want in [({"n_jobs": 4}, 4), ({"n_jobs": -1}, 1), ({"n_jobs": 32}, 1),
                           ({"cpus_per_task": 6}, 6), ({"_target_": "x.BasicLauncher"}, None)]:
        monkeypatch.setattr("hydra.core.hydra_config.HydraConfig.get", staticmethod(lambda spec=launcher: FakeHydra(spec)))
        assert threads.auto_threads() == want, launcher


def test_wandb_online_failure_falls_back_to_offline_once(monkeypatch, tmp_path, caplog):
    import wandb

    from llmlab import tracking

    calls = []

    def fake_init(mode, **kwargs):
        calls.append(mode)
        if mode == "online":
            raise RuntimeError("api.wandb.ai: connection refused\nretrying...")
        return f"run-{mode}"

    monkeypatch.setattr(wandb, "init", fake_init)
    monkeypatch.setattr(tracking, "_ONLINE_FAILED", False)
    cfg = {"name": "wandb", "mode": "online", "project": "p", "dir": str(tmp_path)}
    with caplog.at_level(logging.WARNING, logger="llmlab.tracking"):
        first = tracking.start(cfg, {"seed": 0}, "job-a", "g", tmp_path)
        second = tracking.start(cfg, {"seed": 1}, "job-b", "g", tmp_path)
    assert first.run == "run-offline" and second.run == "run-offline"
    assert calls == ["online", "offline", "offline"]  # the second job does not wait on the network again
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "connection refused" in warning and f"wandb sync {tmp_path / 'wandb'}/offline-run-*" in warning

    # W&B unusable altogether: no tracker, one warning, and the job's own files are unaffected
    def broken(mode, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(wandb, "init", broken)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="llmlab.tracking"):
        tracker = tracking.start(dict(cfg, mode="offline"), {}, "job-c", None, tmp_path)
        tracker.log_results({"metrics": {}}, [], [])
        tracker.finish()
    assert tracker.run is None
    assert [r.getMessage() for r in caplog.records] == ["W&B could not start (OSError: disk full); logging nothing, "
                                                        "local results are complete."]
