"""The Editor protocol and the weight snapshot every weight editor restores from.

An editor's `edit(lm, requests)` is a context manager: inside it the model answers with the
new facts; on exit the weights are restored bit for bit. Weight editors snapshot exactly the
parameters they touch (`WeightSnapshot`); in-context editors change the prompt instead
(`prompt_for`), leaving the weights alone.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from llmlab.capabilities import EditRequest, Editing
from llmlab.methods.base import Method

__all__ = ["EditRequest", "Editor", "WeightEditor", "InContextEditor", "WeightSnapshot", "restoring"]


@dataclass
class Editor(Method, Editing):
    """Base of the editors; `edit`, `prompt_for`, `prepare_demonstrations` as llmlab.capabilities.Editing."""

    family: ClassVar[str] = "editing"


class WeightEditor(Editor):
    """An editor that writes edits into named weights (FT, ROME, MEMIT): `edit` snapshots
    `edited_weights`, calls `apply_edits`, and restores the weights bit for bit on exit. It times
    its own edits: `report()` has `edits`, `edit_seconds` and `edits_per_second`, beside what the
    editor's `facts` hold (its optimisation: losses, steps, norms)."""

    def edited_weights(self, lm) -> list[str]:  # pragma: no cover - protocol
        raise NotImplementedError

    def apply_edits(self, lm, requests: list[EditRequest]) -> None:  # pragma: no cover - protocol
        raise NotImplementedError

    @contextmanager
    def edit(self, lm, requests: list[EditRequest]):
        requests = [requests] if isinstance(requests, EditRequest) else list(requests)
        with restoring(lm.model, self.edited_weights(lm)):
            start = time.perf_counter()
            self.apply_edits(lm, requests)
            clock = self.__dict__.setdefault("_clock", {"edits": 0, "edit_calls": 0, "edit_seconds": 0.0})
            clock["edits"] += len(requests)
            clock["edit_calls"] += 1
            clock["edit_seconds"] += time.perf_counter() - start
            yield lm

    def facts(self) -> dict[str, Any]:
        """The editor's own optimisation facts (subclasses)."""
        return {}

    def report(self) -> dict[str, Any]:
        clock = dict(self.__dict__.get("_clock") or {})
        if clock.get("edit_seconds"):
            clock["edit_seconds"] = round(clock["edit_seconds"], 3)
            clock["edits_per_second"] = clock["edits"] / clock["edit_seconds"]
        return {**self.facts(), **clock}

    def summary(self) -> str | None:
        clock = self.__dict__.get("_clock")
        if not clock or not clock["edits"]:
            return None
        return (f"{self.name}: {clock['edits']} edits in {clock['edit_seconds']:.1f} s "
                f"({clock['edit_seconds'] / clock['edits']:.2f} s per edit)")


class InContextEditor(Editor):
    """An editor that puts the new facts into the prompt (IKE, X-KDE, Reason-KE): `edit` holds
    the requests for `prompt_for`; the weights are never touched. `forget` drops per-edit caches."""

    @contextmanager
    def edit(self, lm, requests: list[EditRequest]):
        self._active = list(requests)
        try:
            yield lm
        finally:
            self._active = []
            self.forget()

    def forget(self) -> None:
        """Drop whatever was cached for the requests of the edit that just ended."""

    def active(self, requests: list[EditRequest] | None = None) -> list[EditRequest]:
        """`requests` if given, else those of the edit in progress."""
        return list(getattr(self, "_active", [])) if requests is None else requests


class WeightSnapshot:
    """Copies of named parameters, restored bit for bit by `restore()`."""

    def __init__(self, model: torch.nn.Module, names: list[str]):
        params = dict(model.named_parameters())
        self._params = {name: params[name] for name in names}
        self._saved = {name: p.detach().clone() for name, p in self._params.items()}

    @torch.no_grad()
    def restore(self) -> None:
        for name, p in self._params.items():
            p.copy_(self._saved[name])


@contextmanager
def restoring(model: torch.nn.Module, names: list[str]):
    """Context manager: snapshot `names`, yield, restore them however the block exits."""
    snapshot = WeightSnapshot(model, names)
    try:
        yield snapshot
    finally:
        snapshot.restore()
