"""The sandboxed side of `llmlab.execution.sandbox` (run as `python -I _child.py <dir> <settings json>`).

In order: resource limits; as root, a private network namespace and a drop to the worker's own
unprivileged uid; the official harness's reliability guard (oop_evaluate/execution.py
`reliability_guard`) plus refusals of sockets and of writes outside the sample's directory; then
each program of the sample runs under an alarm, its output swallowed. The verdicts go to the
result pipe as one JSON line. Standard library only: it runs before any site package is trusted."""

import ctypes
import json
import os
import resource
import signal
import sys

CLONE_NEWNET = 0x40000000


class TimeoutException(Exception):
    pass


def limit_resources(s):
    mem = int(s["memory_mb"]) << 20
    cpu = int(s["timeout"]) + 2
    for res, value in ((resource.RLIMIT_AS, mem), (resource.RLIMIT_DATA, mem), (resource.RLIMIT_CPU, cpu),
                       (resource.RLIMIT_FSIZE, int(s["file_mb"]) << 20), (resource.RLIMIT_CORE, 0),
                       (resource.RLIMIT_NOFILE, 64)):
        resource.setrlimit(res, (value, value))


def isolate(s):
    """Root only: no network (a fresh namespace has no interface up), then the worker's uid, so that
    files outside the sample's directory are read-only and RLIMIT_NPROC counts this worker alone."""
    facts = {"network_namespace": False, "uid": os.getuid()}
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        facts["network_namespace"] = libc.unshare(CLONE_NEWNET) == 0
    if os.geteuid() == 0 and s.get("drop_uid"):
        uid = int(s["uid"])
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        facts["uid"] = uid
    nproc = int(s["max_processes"])
    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    return facts


import builtins  # noqa: E402  (imported before the uid drop: guard() patches them)
import io  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402


def guard(root):
    """The official reliability_guard's disabled functions, plus: no sockets, no writes outside `root`."""

    real_open, real_os_open = builtins.open, os.open
    root = os.path.realpath(root)

    def inside(path):
        try:
            path = os.fspath(path)
            path = path if os.path.isabs(path) else os.path.join(root, path)  # cwd is root (chdir is disabled)
            return os.path.realpath(path).startswith(root + os.sep)
        except (TypeError, ValueError):
            return False

    def guarded_open(file, mode="r", *args, **kwargs):
        if isinstance(file, int) or not any(c in str(mode) for c in "wax+") or inside(file):
            return real_open(file, mode, *args, **kwargs)
        raise PermissionError(f"sandbox: writing outside the sample's directory is refused: {file}")

    def guarded_os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC) and not inside(path):
            raise PermissionError(f"sandbox: writing outside the sample's directory is refused: {path}")
        return real_os_open(path, flags, *args, **kwargs)

    def refused(*args, **kwargs):
        raise PermissionError("sandbox: network access is refused")

    builtins.open = io.open = guarded_open
    os.open = guarded_os_open
    socket.socket = socket.create_connection = socket.socketpair = refused
    builtins.exit = builtins.quit = None
    builtins.help = None
    for name in ("kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid", "fork", "forkpty",
                 "killpg", "rename", "renames", "truncate", "replace", "unlink", "fchmod", "fchown", "chmod", "chown",
                 "chroot", "lchflags", "lchmod", "lchown", "getcwd", "chdir", "execv", "execve", "spawnv", "popen"):
        if hasattr(os, name):
            setattr(os, name, None)
    shutil.rmtree = shutil.move = shutil.chown = None
    subprocess.Popen = None
    for name in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
        sys.modules[name] = None


class _WriteOnly:
    """stdin/stdout/stderr of the program: writes vanish, reads raise (as the official swallow_io)."""

    def write(self, text):
        return len(text)

    def flush(self):
        pass

    def read(self, *args):
        raise IOError("sandbox: stdin is closed")

    readline = readlines = read


def run(program, timeout):
    def on_alarm(signum, frame):
        raise TimeoutException("timed out")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        exec(compile(program, "<sample>", "exec"), {"__name__": "__sample__"})
        return "passed"
    except TimeoutException:
        return "timed out"
    except BaseException as err:  # the sample's own failure (SystemExit and MemoryError included)
        return f"failed: {type(err).__name__}: {err}"[:300]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def main():
    directory, settings = sys.argv[1], json.loads(sys.argv[2])
    result_fd = int(settings["result_fd"])
    result = os.fdopen(result_fd, "w")
    os.chdir(directory)
    programs = []
    for name in settings["programs"]:
        with open(name, encoding="utf-8") as f:
            programs.append(f.read())
    limit_resources(settings)
    facts = isolate(settings)
    guard(directory)
    sys.stdin = sys.stdout = sys.stderr = _WriteOnly()
    verdicts = [run(p, float(settings["timeout"])) for p in programs]
    result.write(json.dumps({"verdicts": verdicts, **facts}) + "\n")
    result.flush()


if __name__ == "__main__":
    main()
