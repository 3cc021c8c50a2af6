"""Run untrusted generated code, one separate process per sample.

Each sample gets a fresh temporary directory (removed afterwards) and a child interpreter
(`python -I _child.py`, a new session, an environment with nothing but PATH/LANG) that, before the
sample's code runs:
- sets resource limits: address space (`memory_mb`), CPU seconds, file size, open files, no core;
- as root: enters a private network namespace (no interface is up: connecting anywhere fails) and
  drops to the worker's own unprivileged uid (`base_uid + worker`), so files outside its directory
  are read-only to it and `RLIMIT_NPROC` (`max_processes`) caps the processes of this worker alone;
- applies the official harness's reliability guard (OOP-eval `oop_evaluate/execution.py`, itself
  from human-eval: os.system, os.fork, os.kill, subprocess.Popen, shutil.rmtree, ... disabled) and
  refuses sockets and writes outside its directory at the Python level;
- runs each program under an alarm of `timeout` seconds (official: 3.0) with its output swallowed.
The parent waits `timeout` per program plus one second (the official `p.join(timeout + 1)`), then
kills the session and, as root, every process left with the worker's uid (a fork that escaped its
session included). A sample that hangs, crashes, exhausts memory, forks, or writes outside its
directory fails that sample and nothing else.

Without root the uid drop and the network namespace are skipped (the Python-level refusals and the
limits remain, RLIMIT_NPROC then counts all of the user's processes): `isolation()` says which
applies, and results record it. The Python-level refusals are not a security boundary against code
written to escape them (ctypes can undo them); the uid, namespace and limits are.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

CHILD = Path(__file__).with_name("_child.py")
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1"}


@dataclass(frozen=True)
class Limits:
    timeout: float = 3.0          # seconds per program (oop_evaluate/evaluate_functional_correctness: timeout=3.0)
    memory_mb: int = 1024         # address space of the child
    file_mb: int = 16             # largest file it may write
    max_processes: int = 32       # RLIMIT_NPROC of the worker's uid (root) or of the user
    base_uid: int = 61000         # worker w runs as uid base_uid + w (root only)


@dataclass
class Outcome:
    verdicts: list[str]           # one per program: "passed", "timed out" or "failed: <why>"
    seconds: float
    isolation: dict

    @property
    def passed(self) -> list[bool]:
        return [v == "passed" for v in self.verdicts]


def isolation() -> str:
    if os.geteuid() != 0:
        return "limits + python-level guard (not root: no uid drop, no network namespace)"
    if _interpreter() is None:
        return "network namespace + limits (no interpreter whose standard library another uid can read: no uid drop)"
    return "worker uid + network namespace + limits"


@lru_cache(maxsize=1)
def _interpreter() -> str | None:
    """As root: a Python whose standard library the worker's uid can read (this one, else python3 on
    PATH with the same major.minor, e.g. when this one lives under /root). None: no uid drop."""
    import shutil as _shutil
    import sysconfig

    def world_readable(path: str) -> bool:
        p = Path(path).resolve()
        return all(os.stat(q).st_mode & 0o005 == 0o005 for q in [p, *p.parents])

    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [sys.executable] + [x for x in (_shutil.which("python3"), _shutil.which(f"python{here}"),
                                                 f"/usr/bin/python{here}", f"/usr/local/bin/python{here}") if x]
    for exe in candidates:
        if exe == sys.executable:
            stdlib = sysconfig.get_paths()["stdlib"]
        else:
            try:
                out = subprocess.run([exe, "-I", "-c", "import sys, sysconfig; print(sys.version_info[:2]); "
                                      "print(sysconfig.get_paths()['stdlib'])"], capture_output=True, text=True,
                                     timeout=10, env=ENV)
                version, stdlib = out.stdout.splitlines()[:2]
            except (OSError, ValueError, subprocess.TimeoutExpired):
                continue
            if version != str(sys.version_info[:2]):
                continue
        if world_readable(exe) and world_readable(stdlib):
            return exe
    return None


def run_sample(programs: list[str], limits: Limits = Limits(), worker: int = 0) -> Outcome:
    """Run `programs` in order in one sandboxed child; a verdict per program."""
    start = time.perf_counter()
    exe = (_interpreter() if os.geteuid() == 0 else None) or sys.executable
    root = os.geteuid() == 0 and _interpreter() is not None  # the uid drop needs a readable standard library
    uid = limits.base_uid + worker
    directory = tempfile.mkdtemp(prefix="llmlab-sample-")
    read_end, write_end = os.pipe()
    try:
        names = []
        for i, program in enumerate(programs):
            name = f"program_{i}.py"
            Path(directory, name).write_text(program, encoding="utf-8")
            names.append(name)
        if root:
            os.chown(directory, uid, uid)
        settings = {"timeout": limits.timeout, "memory_mb": limits.memory_mb, "file_mb": limits.file_mb,
                    "max_processes": limits.max_processes, "uid": uid, "programs": names, "result_fd": write_end, "drop_uid": root}
        proc = subprocess.Popen([exe, "-I", str(CHILD), directory, json.dumps(settings)], cwd=directory,
                                env=ENV, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, pass_fds=(write_end,), start_new_session=True)
        os.close(write_end)
        write_end = -1
        try:
            proc.wait(timeout=limits.timeout * len(programs) + 1)
        except subprocess.TimeoutExpired:
            pass
        _kill(proc, uid if root else None)
        with os.fdopen(read_end, "r") as pipe:
            read_end = -1
            text = pipe.read()
        try:
            report = json.loads(text.strip().splitlines()[-1])
            verdicts = list(report.pop("verdicts"))
        except (ValueError, IndexError, KeyError):  # killed before it could report
            report, verdicts = {}, []
        verdicts += ["timed out" if proc.returncode in (-signal.SIGKILL, None) or not verdicts else
                     f"failed: the process ended (exit {proc.returncode})"] * (len(programs) - len(verdicts))
        return Outcome(verdicts=verdicts, seconds=time.perf_counter() - start, isolation=report)
    finally:
        for fd in (read_end, write_end):
            if fd >= 0:
                os.close(fd)
        shutil.rmtree(directory, ignore_errors=True)


def _kill(proc: subprocess.Popen, uid: int | None) -> None:
    """The sample's session, then (root) any process still running as the worker's uid."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
    if uid is None:
        return
    for _ in range(40):  # a fork that left the session: find it by uid (up to ~2 s)
        stray = live_processes(uid)
        if not stray:
            return
        for pid in stray:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


def live_processes(uid: int) -> list[int]:
    """Processes of `uid` that are not zombies (a killed process stays in /proc until its parent reaps it)."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if os.stat(f"/proc/{pid}").st_uid != uid:
                continue
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in ("Z", "X"):
            out.append(int(pid))
    return out


def run_samples(samples: list[list[str]], limits: Limits = Limits(), workers: int = 1,
                on_done=None) -> list[Outcome]:
    """Every sample (a list of programs) in parallel workers; outcomes in the samples' order."""
    if workers <= 1:
        out = []
        for s in samples:
            out.append(run_sample(s, limits, 0))
            if on_done:
                on_done()
        return out
    free = list(range(workers))
    import threading

    lock = threading.Lock()

    def one(sample):
        with lock:
            worker = free.pop()
        try:
            return run_sample(sample, limits, worker)
        finally:
            with lock:
                free.append(worker)
            if on_done:
                on_done()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, samples))
