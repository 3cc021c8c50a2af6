"""Capabilities: what a method can do, declared by the classes it inherits; what a task can use.

Both tasks and methods import this module (and nothing of each other). A method family's base
class inherits the capability it provides (`class KVPress(Method, KVCompression)`); a task says
which capabilities it honours while it runs and which one, if any, it requires:

    class LongBench(Task):
        honours = (KVCompression,)          # a KV press acts inside the task's generation
    class Bizsre(Task):
        requires = Editing                  # an editor, or `none` for the unedited reference row

Two kinds of capability:
- inference-time (`at_inference = True`): the method acts while the task runs (hooks on the
  model, an edited prompt, an optimizer the task's training loop uses). A task that does not
  honour one would silently run without it, so `check_compatible` refuses the pair.
- prepare-time (`WeightTransform`): all the method's work happens in `prepare` (prune, quantize,
  distil, fuse); every task evaluates the resulting model, so any task accepts it.

`need`/`check_compatible` raise one paragraph that lists the methods having the capability,
read from conf/method/*.yaml (`_target_` classes), never from a hand-kept list. The runner calls
`task.check(method)` before the model loads.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, ClassVar, Iterator

from llmlab.paths import CONF_DIR
from llmlab.errors import CapabilityError



class Capability:
    """A declared capability. Subclasses name it (`label`) and say when it acts."""

    label: ClassVar[str] = "capability"
    at_inference: ClassVar[bool] = True


# -- inference-time capabilities ------------------------------------------------------------------
class KVCompression(Capability):
    """Compresses the KV cache inside `apply(lm)` (after prefill); reports the bytes it held."""

    label = "KV-cache compression"

    def kv_stats(self) -> dict[str, Any]:  # pragma: no cover - protocol
        """KV bytes held after the last prefill, per layer and in total, beside the full cache's."""
        raise NotImplementedError


@dataclass
class EditRequest:
    """One fact to write: `prompt` (ending where the target begins), its `subject` (a substring of
    `prompt`), the `target_new` answer, the old answer if known, and task-specific `extra`."""

    prompt: str
    subject: str
    target_new: str
    target_true: str | None = None
    extra: dict = field(default_factory=dict)  # e.g. language, case id, rephrase, loc, new_answer


class Editing(Capability):
    """Writes facts: `edit(lm, requests)` is a context manager inside which the model answers with
    the new facts, restored on exit; `prompt_for` gives the prompt a query is asked with."""

    label = "knowledge editing"

    @contextmanager
    def edit(self, lm, requests: list[EditRequest]) -> Iterator[Any]:  # pragma: no cover - protocol
        yield lm

    def prompt_for(self, lm, query: str, requests: list[EditRequest], lang: str | None = None) -> str:
        """The prompt to ask `query` with under the edits (the query itself for weight editors).
        `lang` is the language `query` is asked in, when the task knows it."""
        return query

    def prepare_demonstrations(self, lm, pool: list[EditRequest]) -> None:
        """The task's other cases, offered once before editing (IKE retrieves demonstrations)."""


@dataclass
class Answer:
    """An answer parsed from a model output, with the output it came from. `text` is what the
    protocol's official evaluation extracts; `lenient` a more forgiving parse, when it has one."""

    text: str
    output: str
    lenient: str | None = None


class OwnAnswering(Capability):
    """An editor with its own answering protocol (Reason-KE's reasoning chains): the task asks
    `answers(lm, questions, requests)` instead of its own prompt."""

    label = "an answering protocol of its own"

    def answers(self, lm, questions: list[str], requests: list[EditRequest]) -> list[Answer]:  # pragma: no cover
        raise NotImplementedError


class PromptStrategy(Capability):
    """Builds the chat messages a task sends for one example (MT prompting: TSP, DSP, few-shot)."""

    label = "prompt strategy"

    def messages(self, example: dict) -> list[dict]:  # pragma: no cover - protocol
        raise NotImplementedError


class Optimization(Capability):
    """Supplies the optimizer of a task that fine-tunes (SAM, FSAM, ...): `optimizer(model, base, seed)` wraps
    the base optimizer the training loop built (AdamW with the task's schedule) and returns an object
    with `step()` / `zero_grad()` / `param_groups`; when it says `two_pass`, the loop
    (llmlab.training.finetune) calls `perturb(step, lr)`, runs the second forward/backward (on
    `select(losses_before, losses_after)` examples when `selects_examples`), then `restore()`."""

    label = "an optimizer for fine-tuning"

    def optimizer(self, model, base, seed: int = 0):  # pragma: no cover - protocol
        raise NotImplementedError


class FineTunedTransform(Capability):
    """Acts on the model a task has fine-tuned, before the task evaluates it (quantize the fine-tuned model:
    PTQ, QAT, ZSAQ): `after_finetune(model, data, ctx) -> model`. `data` gives what a method may use: the
    task's training batches (`data.batches(epoch)`, for QAT with real data), the vocabulary size and special
    ids (for random or generated inputs), the task's output kind (classification or regression)."""

    label = "a transform of the fine-tuned model"

    def after_finetune(self, model, data, ctx):  # pragma: no cover - protocol
        raise NotImplementedError


# -- prepare-time ---------------------------------------------------------------------------------
class WeightTransform(Capability):
    """All the work happens in `prepare` (prune, quantize, distil, fuse): any task evaluates the result."""

    label = "a weight transform (prepare only)"
    at_inference = False


class TrainingEndpoints(Capability):
    """A method that trained the model from a known starting point and has a second model to compare with
    (PTvsRI's RI and PT systems): `landscape_points()` -> {"init": state dict, "other": state dict}, the two
    directions a loss-landscape probe plots along."""

    label = "training endpoints (init and a second model)"
    at_inference = False

    def landscape_points(self) -> dict:  # pragma: no cover - protocol
        raise NotImplementedError


INFERENCE_CAPABILITIES = (KVCompression, Editing, OwnAnswering, PromptStrategy, Optimization, FineTunedTransform)


# -- the checks -----------------------------------------------------------------------------------
def capabilities_of(obj) -> list[type[Capability]]:
    """The declared capabilities of a method (instance or class), most specific first."""
    cls = obj if isinstance(obj, type) else type(obj)
    return [c for c in cls.__mro__ if isinstance(c, type) and issubclass(c, Capability) and c not in (
        Capability,) and c.__module__ == __name__]


def method_name(method) -> str:
    return getattr(method, "name", type(method).__name__)


def is_reference(method) -> bool:
    """The unmodified model (`method=none`): the reference row every task accepts."""
    return not capabilities_of(method) and getattr(method, "family", None) == "none"


@lru_cache(maxsize=1)
def method_classes() -> dict[str, type]:
    """{config name: class} for every conf/method/*.yaml, from its `_target_`."""
    import yaml
    from hydra.utils import get_class

    def target(name: str, seen: tuple = ()) -> str | None:
        """`_target_` of conf/method/<name>.yaml, or of the sibling method it extends (`defaults: [ft]`)."""
        path = CONF_DIR / "method" / f"{name}.yaml"
        if name in seen or not path.exists():
            return None
        data = yaml.safe_load(path.read_text()) or {}
        if data.get("_target_"):
            return data["_target_"]
        parents = [d for d in data.get("defaults") or [] if isinstance(d, str) and d != "_self_"]
        return next((t for t in (target(p, seen + (name,)) for p in parents) if t), None)

    out = {}
    for path in sorted((CONF_DIR / "method").glob("*.yaml")):
        try:
            found = target(path.stem)
            if found:
                out[path.stem] = get_class(found)
        except Exception:  # a broken config is reported when it is chosen, not here
            continue
    return out


def methods_with(capability: type[Capability]) -> list[str]:
    """Config names of the methods that declare `capability`."""
    return [name for name, cls in method_classes().items() if issubclass(cls, capability)]


def _listing(capability: type[Capability]) -> str:
    names = methods_with(capability)
    return ", ".join(names) if names else "(none yet)"


def need(method, capability: type[Capability], task: str, reference_ok: bool = True):
    """`method` if it declares `capability` (or is the unmodified reference, when `reference_ok`);
    else a CapabilityError listing the methods that have it."""
    if isinstance(method, capability) or (reference_ok and is_reference(method)):
        return method
    have = [c.label for c in capabilities_of(method)]
    what = f"{method_name(method)} is a method for {', '.join(have)}" if have else f"{method_name(method)} lacks it"
    ref = " (or none for the unmodified model)" if reference_ok else ""
    raise CapabilityError(
        f"task {task} needs a method with {capability.label}; {what}. Methods with {capability.label}: "
        f"{_listing(capability)}{ref}. Choose one with method=<name> (`llmlab ls method` describes each)."
    )


def check_compatible(method, task: str, honours: tuple = (), requires: type[Capability] | None = None,
                     reference_ok: bool = True) -> None:
    """Refuse a method whose inference-time capability the task would silently ignore, and a method
    that lacks the capability the task requires. Prepare-only methods pass (any task evaluates them)."""
    if requires is not None:
        need(method, requires, task, reference_ok)
    for cap in capabilities_of(method):
        if not cap.at_inference or any(issubclass(cap, h) or issubclass(h, cap) for h in honours):
            continue
        if requires is not None and issubclass(requires, cap):
            continue
        usable = sorted({n for h in honours for n in methods_with(h)} | {n for n, c in method_classes().items()
                                                                          if issubclass(c, WeightTransform)})
        can = f"It can use: {', '.join(usable)} (and none)." if usable else "It runs the model as composed: use method=none."
        raise CapabilityError(
            f"task {task} cannot use {method_name(method)}'s {cap.label}: the task never calls it, so the run "
            f"would silently measure the unmodified model. {can} Methods with {cap.label} go with other tasks "
            f"(`llmlab ls task`)."
        )
