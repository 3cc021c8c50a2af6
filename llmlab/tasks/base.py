"""The Task protocol and the one loop every task shares.

A task declares what it needs (llmlab.capabilities):
  honours        inference-time capabilities it calls (a KV press, an editor, ...)
  requires       the capability it cannot run without (or None); `reference_ok`: `none` runs too
  needs_weights  it reads logits or weights (False: text alone, so API/replay models do)
and `task.check(method)` refuses an incompatible method, and missing data, before the model loads.

The loop (`evaluate`) is written once here:

    items = self.items(lm, ctx)                 # what one unit of work is (`unit`)
    items = self.limited(items, ctx.limit)      # `limit` means what `limit_means` says
    for item in progress(items):                # a bar on a terminal, log lines elsewhere
        predictions += self.run_one(lm, method, item, ctx)   # + the method's per-call facts
    metrics = self.aggregate(predictions)
    Scores(metrics, predictions, main_metric, info)

Subclasses write `items`, `run_one`, `aggregate` (and `info`); timings go to
`evaluate/items` and `evaluate/examples`. A task whose work does not fit per-item steps may
override `evaluate` itself, and still calls `limited` and `progress`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from llmlab.capabilities import check_compatible
from llmlab.errors import UserError
from llmlab.progress import progress


@dataclass
class Scores:
    """Flat named metrics plus per-example predictions.

    Metric names say how they were computed (`token_acc`, `exact_match`, `rouge1_f`, ...): two
    different computations never share a name (llmlab.metrics.registry describes each).
    """

    metrics: dict[str, float]
    predictions: list[dict[str, Any]] = field(default_factory=list)
    main_metric: str | None = None  # the metric a table shows by default
    info: dict[str, Any] = field(default_factory=dict)  # how the scores were computed


@dataclass
class Task:
    name: ClassVar[str] = "task"
    honours: ClassVar[tuple] = ()
    requires: ClassVar[type | None] = None
    reference_ok: ClassVar[bool] = True
    needs_weights: ClassVar[bool] = True
    unit: ClassVar[str] = "example"
    limit_means: ClassVar[str] = "the first N examples"
    main_metric: ClassVar[str | None] = None

    # -- before the model loads ---------------------------------------------------------------
    def check(self, method) -> None:
        """Refuse a method this task cannot honour, and missing or broken data, before loading."""
        check_compatible(method, self.name, self.honours, self.requires, self.reference_ok)
        self.check_data()

    def check_data(self) -> None:
        """Subclasses: raise a UserError naming the path when the data is missing or unreadable."""

    def check_model(self, spec: dict) -> None:
        """Refuse a model without weights (an API or replay backend) when the task reads logits."""
        source = (spec or {}).get("source")
        if self.needs_weights and source in ("api", "replay"):
            raise UserError(f"task {self.name} reads the model's logits or weights, which a model={spec.get('name')} "
                            f"({source}) backend does not give: it returns text only. Use a local model "
                            f"(model=smollm2-135m, model=hf model.path=...).")

    # -- the loop -----------------------------------------------------------------------------
    def items(self, lm, ctx) -> list:  # pragma: no cover - subclasses
        raise NotImplementedError

    def limited(self, items: list, limit: int | None) -> list:
        """The items `limit` keeps (default: the first `limit`); `limit_means` says it in words."""
        return list(items) if not limit else list(items)[: int(limit)]

    def run_one(self, lm, method, item, ctx) -> dict | list[dict]:  # pragma: no cover - subclasses
        raise NotImplementedError

    def aggregate(self, predictions: list[dict], ctx) -> dict[str, float]:  # pragma: no cover - subclasses
        raise NotImplementedError

    def info(self, items: list, method, ctx) -> dict[str, Any]:
        return {}

    def evaluate(self, lm, method, ctx) -> Scores:
        with ctx.timer("evaluate/items"):
            items = self.limited(self.items(lm, ctx), ctx.limit)
        predictions: list[dict] = []
        for item in progress(items, desc=self.name, unit=self.unit):
            with ctx.timer("evaluate/examples"):
                out = self.run_one(lm, method, item, ctx)
            facts = method.example_facts()
            for pred in out if isinstance(out, list) else [out]:
                pred.update(facts)
                predictions.append(pred)
        metrics = self.aggregate(predictions, ctx)
        info = {"limit_means": self.limit_means, "items": len(items), **self.info(items, method, ctx)}
        return Scores(metrics=metrics, predictions=predictions, main_metric=self.main_metric, info=info)


class BatchedTask(Task):
    """A task that generates for a batch of items at once (`batch_size` of them): subclasses write
    `run_batch(lm, method, batch, ctx) -> predictions` instead of `run_one`; the rest of the loop is
    Task's (limit, progress, timing, aggregate, info)."""

    unit: ClassVar[str] = "batch"

    def run_batch(self, lm, method, batch: list, ctx) -> list[dict]:  # pragma: no cover - subclasses
        raise NotImplementedError

    def evaluate(self, lm, method, ctx) -> Scores:
        with ctx.timer("evaluate/items"):
            items = self.limited(self.items(lm, ctx), ctx.limit)
        size = int(getattr(self, "batch_size", 8))
        predictions: list[dict] = []
        for start in progress(range(0, len(items), size), desc=self.name, unit=self.unit):
            with ctx.timer("evaluate/examples"):
                predictions += self.run_batch(lm, method, items[start:start + size], ctx)
        metrics = self.aggregate(predictions, ctx)
        info = {"limit_means": self.limit_means, "items": len(items), **self.info(items, method, ctx)}
        return Scores(metrics=metrics, predictions=predictions, main_metric=self.main_metric, info=info)
