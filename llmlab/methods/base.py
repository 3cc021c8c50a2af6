"""The Method protocol.

A method's hyperparameters are dataclass fields filled from conf/method/<name>.yaml.
`prepare` changes weights once per run (train, prune, quantize); `apply` patches inference
(hooks) and undoes the patch on exit. Families add one capability each (a KV press's
`compress`, an editor's `edit`, ...), which tasks ask for by name.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar


@dataclass
class Method:
    name: ClassVar[str] = "method"
    family: ClassVar[str] = "none"

    def prepare(self, lm, ctx):
        """Weight-changing work, once per run. Returns the (possibly new) LM."""
        return lm

    @contextmanager
    def apply(self, lm):
        """Inference-time patch, undone on exit."""
        yield lm

    def describe(self) -> dict:
        """Facts about this method worth recording beside the scores."""
        return {}


@dataclass
class NoMethod(Method):
    """The unmodified model: the reference row of every table."""

    name: ClassVar[str] = "none"
