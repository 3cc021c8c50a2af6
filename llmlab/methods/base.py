"""The Method protocol.

A method's hyperparameters are dataclass fields filled from conf/method/<name>.yaml.
`prepare` changes weights once per run (train, prune, quantize); `apply` patches inference
(hooks) and undoes the patch on exit. A family's base class also inherits the capability it
provides (llmlab.capabilities: `KVCompression`, `Editing`, ...), which tasks check for.

One reporting channel: a method describes its own facts. `report()` returns what it measured
over the run (KV bytes held, edit time, sparsity reached, FLOPs, training losses) for
`results.json`'s `method_info`; `summary()` is one line the runner prints; `example_facts()`
gives the facts of the last call, which the task loop attaches to that example's prediction.
Tasks and the runner record and print them without knowing the family.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass
class Method:
    name: ClassVar[str] = "method"
    family: ClassVar[str] = "none"

    def check(self) -> None:
        """Before any model loads: raise a UserError naming a missing file or setting (default: nothing)."""

    def check_model(self, spec: dict) -> None:
        """Before any model loads: raise a UserError when the model (its config group, resolved) cannot take this
        method (default: any model can)."""

    def prepare(self, lm, ctx):
        """Weight-changing work, once per run. Returns the (possibly new) LM."""
        return lm

    @contextmanager
    def apply(self, lm):
        """Inference-time patch, undone on exit."""
        yield lm

    def report(self) -> dict[str, Any]:
        """Facts about what this method did in the run, recorded beside the scores (default: the `_facts` a
        method gathered, if it keeps them there)."""
        return dict(getattr(self, "_facts", None) or {})

    def summary(self) -> str | None:
        """One line for the console (e.g. "KV held 0.4 MiB vs full 3.1 MiB per prompt (13%)")."""
        return None

    def example_facts(self) -> dict[str, Any]:
        """Facts of the last call (one example), attached to its prediction by the task loop."""
        return {}


@dataclass
class NoMethod(Method):
    """The unmodified model: the reference row of every table."""

    name: ClassVar[str] = "none"
