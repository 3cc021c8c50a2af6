"""The OOP execution harness: hostile inputs, throughput with 1 and 2 workers, overhead per sample.

    python scripts/bench_oop_harness.py [<OOP-eval dir>]     # default ../shared/data/oop

1. A table of hostile samples (each must fail alone, the harness still running, nothing left behind).
2. samples/s re-scoring the official example (5 problems x 15 completions, tests + keyword programs)
   with 1 and 2 workers.
3. Overhead per sample: wall time of a sample whose code does nothing."""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

from llmlab.execution.sandbox import Limits, isolation, live_processes, run_sample, run_samples
from llmlab.tasks.oop import read_problems
from llmlab.models.replay import read_outputs


def hostile_table() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    threading.Thread(target=server.accept, daemon=True).start()
    os.environ["LLMLAB_BENCH_SECRET"] = "hunter2"
    outside = Path(tempfile.gettempdir()) / "llmlab_written_by_sample"
    cases = {
        "infinite loop": "while True: pass",
        "infinite loop that catches the alarm": "while True:\n    try:\n        while True: pass\n    except BaseException: pass",
        "fork bomb (posix.fork, bypassing the guard)": "import posix\nwhile True:\n    try: posix.fork()\n    except OSError: pass",
        "10 GiB allocation": "x = bytearray(10 * 1024 ** 3)",
        "os.system": f"import os\nos.system('touch {outside}')",
        "write outside the temp dir": f"open('{outside}', 'w').write('x')",
        "read an environment secret": "import os\nassert os.environ['LLMLAB_BENCH_SECRET'] == 'hunter2'",
        "connect to 127.0.0.1 (a live server)": f"import _socket\ns = _socket.socket()\n"
                                                f"s.connect(('127.0.0.1', {server.getsockname()[1]}))",
    }
    print(f"sandbox: {isolation()}\n")
    print("| hostile sample | verdict | seconds |\n|---|---|---|")
    for name, code in cases.items():
        o = run_sample([code])
        print(f"| {name} | {o.verdicts[0][:80]} | {o.seconds:.2f} |")
    after = run_sample(["assert 1 + 1 == 2"])
    left = live_processes(Limits().base_uid) if os.geteuid() == 0 else []
    print(f"\nafter them: an honest sample {after.verdicts[0]}; file written outside: {outside.exists()}; "
          f"processes left with the worker uid: {len(left)}")


def throughput(oop_dir: Path) -> None:
    problems = {p.task_id: p for p in read_problems(oop_dir / "example" / "oop_problem.jsonl")}
    outputs = read_outputs(oop_dir / "example" / "result.jsonl", "jsonl", "task_id", "completion")
    samples = [[c + "\n" + problems[t].test_program, f"str_content = {c!r}\n" + problems[t].match_program]
               for t, cs in outputs.items() for c in cs]
    for workers in (1, 2):
        start = time.perf_counter()
        out = run_samples(samples, Limits(), workers)
        wall = time.perf_counter() - start
        print(f"workers={workers}: {len(samples)} samples in {wall:.1f} s = {len(samples) / wall:.1f} samples/s "
              f"({sum(all(o.passed) for o in out)} pass tests and keywords)")
    times = [run_sample(["pass"]).seconds for _ in range(10)]
    print(f"overhead per sample (a sample that does nothing): median {sorted(times)[5] * 1000:.0f} ms")


if __name__ == "__main__":
    hostile_table()
    print()
    throughput(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/oop"))
