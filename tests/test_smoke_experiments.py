"""Every experiment in conf/experiment/ runs end to end at scale=smoke: its whole sweep on tiny models and
generated data, then its table, where every cell of ours is filled and the paper's numbers stand beside.
A new experiment without a working smoke path fails here."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from llmlab import tables

CONF = Path(__file__).resolve().parent.parent / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
TIMES: dict[str, float] = {}


def test_every_experiment_has_a_smoke_scale():
    missing = [n for n in EXPERIMENTS if not (CONF / "experiment_scale" / f"{n}-smoke.yaml").exists()]
    assert not missing, f"experiments without conf/experiment_scale/<name>-smoke.yaml: {missing}"


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_runs_end_to_end_at_smoke_scale(name, llmlab_inproc, outputs):
    start = time.perf_counter()
    code, out, err = llmlab_inproc("-m", f"experiment={name}", "scale=smoke", "logger=none")
    assert code == 0, f"{name}: exit {code}\n{out[-3000:]}\n{err[-3000:]}"
    assert " 0 failed" in out
    spec = tables.load_spec(name, overrides=["scale=smoke"])
    results = tables.collect(spec, outputs, spec.get("where"))
    assert results, f"{name}: no results"
    markdown, built = tables.render(spec, results, name)
    ours = [t for t in built if t["cells"]]
    assert ours, f"{name}: no table holds a result"
    for table in ours:
        rows = {r for r, _ in table["cells"]} | set(spec["sweep"].get(spec["rows"], []))
        empty = [(r, c) for r in table["rows"] if r in rows for c in table["columns"] if (r, c) not in table["cells"]]
        assert not empty, f"{name} {table['group']}: cells without a result: {empty}\n{markdown}"
    if spec.get("reported"):
        assert "(paper " in markdown, f"{name}: the paper's numbers are missing from the table\n{markdown}"
    TIMES[name] = time.perf_counter() - start
    print(f"{name}: {TIMES[name]:.1f} s at smoke scale")
