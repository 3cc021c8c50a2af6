"""Progress of long work: a tqdm bar on a terminal, a plain line now and then elsewhere.

Off a terminal (a log file, CI, a SLURM job), carriage-return bars turn into walls of text:
there `progress` writes one line at most every `every` seconds (and at the end) with the count,
the rate and the time left, through logging (so it lands in job.log once).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
log = logging.getLogger("llmlab.progress")


def interactive() -> bool:
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def progress(items: Iterable[T], desc: str, unit: str = "it", total: int | None = None,
             every: float = 30.0) -> Iterator[T]:
    """Iterate over `items` showing progress (tqdm on a terminal, periodic log lines otherwise)."""
    if total is None:
        try:
            total = len(items)  # type: ignore[arg-type]
        except TypeError:
            total = None
    if interactive():
        from tqdm.auto import tqdm

        yield from tqdm(items, desc=desc, unit=unit, total=total, leave=False, dynamic_ncols=True)
        return
    start = last = time.perf_counter()
    done = 0
    for item in items:
        yield item
        done += 1
        now = time.perf_counter()
        if now - last >= every or (total is not None and done == total and now - start >= every):
            last = now
            log.info("%s", line(desc, done, total, unit, now - start))


def line(desc: str, done: int, total: int | None, unit: str, elapsed: float) -> str:
    rate = done / elapsed if elapsed > 0 else 0.0
    if total:
        left = (total - done) / rate if rate > 0 else float("nan")
        return (f"{desc}: {done}/{total} {plural(unit)} ({100 * done / total:.0f}%), {elapsed:.0f} s elapsed, "
                f"~{left:.0f} s left")
    return f"{desc}: {done} {plural(unit)}, {elapsed:.0f} s elapsed ({rate:.2f} {unit}/s)"


def plural(unit: str) -> str:
    """"batch" -> "batches", "example" -> "examples"."""
    return unit + ("es" if unit.endswith(("s", "x", "ch", "sh")) else "s")
