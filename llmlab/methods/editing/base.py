"""The Editor protocol and the weight snapshot every weight editor restores from.

An editor's `edit(lm, requests)` is a context manager: inside it the model answers with the
new facts; on exit the weights are restored bit for bit. Weight editors snapshot exactly the
parameters they touch (`WeightSnapshot`); in-context editors change the prompt instead
(`prompt_for`), leaving the weights alone.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from llmlab.methods.base import Method


@dataclass
class EditRequest:
    """One fact to write: `prompt` (the edit prompt, ending where the target begins), its
    `subject` (a substring of `prompt`), the `target_new` answer, and the old answer if known."""

    prompt: str
    subject: str
    target_new: str
    target_true: str | None = None
    extra: dict = field(default_factory=dict)  # task-specific fields (e.g. language, case id)


@dataclass
class Editor(Method):
    family: ClassVar[str] = "editing"

    @contextmanager
    def edit(self, lm, requests: list[EditRequest]):
        """Apply `requests` to `lm`; yield the edited LM; restore the original on exit."""
        yield lm

    def prompt_for(self, lm, query: str, requests: list[EditRequest], lang: str | None = None) -> str:
        """The prompt to evaluate `query` with, under the current edits (identity for weight editors).
        `lang` is the language `query` is asked in, when the task knows it."""
        return query

    def prepare_demonstrations(self, lm, pool: list[EditRequest]) -> None:
        """Optional: the task's other edit cases, offered once before editing (IKE retrieves its
        in-context demonstrations from them; `extra` may hold `case_id`, `rephrase`, `loc`,
        `loc_ans`). Weight editors ignore it."""


def prompt_target_ids(tokenizer, prompt: str, target: str) -> tuple[list[int], int]:
    """Token ids of `prompt + " " + target` and the number of prompt tokens: the target tokens are
    `ids[n_prompt:]` (EasyEdit's split: the prompt is tokenized alone, the pair together)."""
    n_prompt = len(tokenizer(prompt)["input_ids"])
    ids = list(tokenizer(f"{prompt} {target}")["input_ids"])
    return ids, min(n_prompt, len(ids))


class WeightEditor(Editor):
    """An editor that writes edits into named weights (FT, ROME, MEMIT): `edit` snapshots
    `edited_weights`, calls `apply_edits`, and restores the weights bit for bit on exit."""

    def edited_weights(self, lm) -> list[str]:  # pragma: no cover - protocol
        raise NotImplementedError

    def apply_edits(self, lm, requests: list[EditRequest]) -> None:  # pragma: no cover - protocol
        raise NotImplementedError

    @contextmanager
    def edit(self, lm, requests: list[EditRequest]):
        requests = [requests] if isinstance(requests, EditRequest) else list(requests)
        with restoring(lm.model, self.edited_weights(lm)):
            self.apply_edits(lm, requests)
            yield lm


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
