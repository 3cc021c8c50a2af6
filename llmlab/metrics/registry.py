"""The metric registry: every metric name a task records, with its direction and what it computes.

    @metric("exact_match", description="normalized prediction == reference (SQuAD)")
    def exact_match(prediction, reference): ...

or, for a name a task aggregates itself, `register("perplexity", higher_is_better=False, ...)`.

Metric names recorded in results.json are paths (`en_zh/reliability/token_acc`,
`rouge1_f@1024`, `multi_news`): `lookup` finds the entry by the whole name, then by its last
path part, then without an `@...` qualifier. `results.json` stores the entry of every metric it
holds (`metric_info`), and tables read the direction from it to say whether a Δ is better.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Metric:
    name: str
    description: str
    higher_is_better: bool | None = True  # None: a count or a fact, neither better nor worse
    unit: str = ""          # "x100", "0-1", "tokens", "bytes", ...
    fn: Callable | None = None  # the pure function, where one computes it per example


REGISTRY: dict[str, Metric] = {}


def register(name: str, description: str, higher_is_better: bool | None = True, unit: str = "",
             fn: Callable | None = None) -> Metric:
    """Register (or re-register identically) a metric name; a conflicting entry is a bug."""
    entry = Metric(name, description, higher_is_better, unit, fn)
    old = REGISTRY.get(name)
    if old is not None and (old.higher_is_better, old.description) != (higher_is_better, description):
        raise ValueError(f"metric {name!r} registered twice with different meanings")
    REGISTRY[name] = entry
    return entry


def metric(name: str, description: str, higher_is_better: bool = True, unit: str = ""):
    """Decorator: register a pure per-example function under `name`."""
    def wrap(fn):
        register(name, description, higher_is_better, unit, fn)
        return fn
    return wrap


def lookup(name: str) -> Metric | None:
    """The entry for a recorded metric name (whole name, last path part, then without `@...`)."""
    for candidate in (name, name.rsplit("/", 1)[-1], name.split("@", 1)[0], name.rsplit("/", 1)[-1].split("@", 1)[0]):
        if candidate in REGISTRY:
            return REGISTRY[candidate]
    return None


def info_for(names) -> dict[str, dict]:
    """{name: {description, higher_is_better, unit}} for recorded metric names (unknown: direction null)."""
    out = {}
    for name in names:
        entry = lookup(name)
        out[name] = ({"description": entry.description, "higher_is_better": entry.higher_is_better,
                      "unit": entry.unit} if entry else {"description": None, "higher_is_better": None, "unit": ""})
    return out


def arrow(name: str) -> str:
    """"↑" when higher is better, "↓" when lower is, "" when unknown."""
    entry = lookup(name)
    if entry is None or entry.higher_is_better is None:
        return ""
    return "↑" if entry.higher_is_better else "↓"


register("average", "unweighted mean of the task's per-subset (or per-task) scores")
