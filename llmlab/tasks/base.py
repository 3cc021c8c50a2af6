"""The Task protocol: a task owns its loop, calls the method's hooks, and returns Scores."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass
class Scores:
    """Flat named metrics plus per-example predictions.

    Metric names say how they were computed (`token_acc`, `exact_match`, `rouge1_f`, ...):
    two different computations never share a name.
    """

    metrics: dict[str, float]
    predictions: list[dict[str, Any]] = field(default_factory=list)
    # which metric a table should show by default, and facts about how scores were computed
    main_metric: str | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Task:
    name: ClassVar[str] = "task"

    def evaluate(self, lm, method, ctx) -> Scores:  # pragma: no cover - protocol
        raise NotImplementedError
