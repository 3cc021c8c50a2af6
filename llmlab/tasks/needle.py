"""Needle in a haystack: retrieve one sentence hidden at a depth of a long context.

For each context length L (tokens of haystack) and depth d (percent), the needle is inserted
into the first L haystack tokens at the sentence boundary at or before d% of them; the model
answers the question greedily and the answer is scored against the needle by ROUGE-1 F
(KVCache-Factory / LLMTest_NeedleInAHaystack score the same way, on a 0-10 scale: ours is
0-100). A heatmap (depth × length) is saved beside the results.

Haystack: the `.txt` files of `haystack_dir` (sorted, concatenated; the standard one is Paul
Graham's essays), or, when none is given, the docstrings of Python's standard library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import logging

from llmlab.capabilities import KVCompression
from llmlab.errors import UserError
from llmlab.generation import greedy_generate
from llmlab.metrics.registry import register
from llmlab.metrics.text import rouge1_f_stemmed, rouge_tokens
from llmlab.tasks.base import Scores, Task

register("rouge1_f", "ROUGE-1 F with Porter stemming (rouge-score) of the answer vs the needle, x100 "
         "(KVCache-Factory / LLMTest_NeedleInAHaystack; their 0-10 scale x10)", unit="x100")
register("needle_recall", "the needle's own words (not in the question; stemmed, no stopwords) found in the answer, "
         "x100", unit="x100")
register("needle_found", "cells whose answer holds at least half of the needle's own words, % of cells", unit="%")

log = logging.getLogger(__name__)

# LLMTest_NeedleInAHaystack's default needle and question (also KVCache-Factory's)
NEEDLE = "The best thing to do in San Francisco is eat a sandwich and sit in Dolores Park on a sunny day."
QUESTION = "What is the best thing to do in San Francisco?"


@dataclass
class Needle(Task):
    name: ClassVar[str] = "needle"
    honours: ClassVar[tuple] = (KVCompression,)
    unit: ClassVar[str] = "cell"
    limit_means: ClassVar[str] = "the first N (context length, depth) cells, lengths outer"
    main_metric: ClassVar[str] = "rouge1_f"

    context_lengths: list[int] = field(default_factory=lambda: [512, 1024, 2048])
    depths: list[float] = field(default_factory=lambda: [0, 25, 50, 75, 100])  # percent of the context
    needle: str = NEEDLE
    question: str = QUESTION
    haystack_dir: str | None = None  # directory of .txt files; None: the standard library's docstrings
    template: str = ("{context}\n\nBased on the text above, answer the question. {question} "
                     "Answer in one sentence.")
    answer_prefix: str = ""  # text appended after the prompt (inside the assistant turn when chat)
    chat: bool | None = None  # None: use the chat template when the model spec says chat: true
    max_new_tokens: int = 40
    length_buffer: int = 0  # tokens of `length` left for the question and answer (KVCache-Factory: 200)
    stop_at_newline: bool = False  # KVCache-Factory stops generation at a newline
    heatmap: bool = True

    def check_data(self) -> None:
        if self.haystack_dir:
            self.haystack_files()

    def haystack_files(self) -> list[Path]:
        root = Path(self.haystack_dir).expanduser()
        files = sorted(root.glob("*.txt")) if root.is_dir() else []
        if not files:
            raise UserError(
                f"needle: no .txt files in task.haystack_dir={root} "
                f"({'not a directory' if not root.is_dir() else 'empty'}). Give a directory of .txt files "
                f"(e.g. Paul Graham's essays) or leave haystack_dir=null to use the standard library's docstrings."
            )
        return files

    def haystack(self) -> str:
        if not self.haystack_dir:
            from llmlab.corpus import stdlib_text

            return stdlib_text()
        return "\n\n".join(f.read_text(encoding="utf-8", errors="replace") for f in self.haystack_files())

    def period_ids(self, tok) -> set[int]:
        """Token ids that end a sentence (their text ends with '.'), for needle placement."""
        if not hasattr(self, "_period_ids"):
            vocab = tok.get_vocab()
            self._period_ids = {i for t, i in vocab.items() if t.endswith(".")}
        return self._period_ids

    def build_prompt(self, lm, hay_ids: list[int], length: int, depth: float) -> tuple[list[int], int]:
        """Prompt ids for one cell, and the token offset where the needle went.

        As LLMTest_NeedleInAHaystack / KVCache-Factory `insert_needle`: the context is `length`
        minus `length_buffer` tokens including the needle; at depth 100 the needle goes last,
        otherwise at depth% of the haystack tokens, moved back to just after a sentence end.
        """
        tok = lm.tokenizer
        needle_ids = tok(self.needle, add_special_tokens=False)["input_ids"]
        budget = max(length - self.length_buffer - len(needle_ids), 1)
        context = list(hay_ids[:budget])
        if depth >= 100:
            point = len(context)
        else:
            point = int(len(context) * depth / 100)
            periods = self.period_ids(tok)
            while point > 0 and context[point - 1] not in periods:
                point -= 1
        context_text = tok.decode(context[:point] + needle_ids + context[point:], skip_special_tokens=True)
        prompt = self.template.format(context=context_text, question=self.question)
        chat = lm.spec.get("chat", False) if self.chat is None else self.chat
        ids = lm.encode(prompt, chat=chat)
        if self.answer_prefix:
            ids = ids + lm.encode(self.answer_prefix, add_special_tokens=False)
        return ids, point

    # -- the loop (llmlab.tasks.base.Task.evaluate) ----------------------------------------------
    def items(self, lm, ctx) -> list[tuple[int, float]]:
        hay_ids = lm.tokenizer(self.haystack(), add_special_tokens=False)["input_ids"]
        longest = max(self.context_lengths)
        while len(hay_ids) < longest:  # repeat a short haystack
            hay_ids = hay_ids + hay_ids
        self._hay_ids = hay_ids
        nl = lm.tokenizer("\n", add_special_tokens=False)["input_ids"][-1:]
        self._stop = set(nl) if self.stop_at_newline else set()
        return [(length, depth) for length in self.context_lengths for depth in self.depths]

    def run_one(self, lm, method, cell, ctx) -> dict:
        length, depth = cell
        ids, offset = self.build_prompt(lm, self._hay_ids, length, depth)
        with method.apply(lm):
            out = greedy_generate(lm, ids, self.max_new_tokens, stop_ids=self._stop)[0]
        answer = lm.decode(out).strip()
        recall = needle_recall(self.needle, self.question, answer)
        return {"context_length": length, "depth": depth, "prompt_tokens": len(ids), "needle_token_offset": offset,
                "prediction": answer, "rouge1_f": 100 * rouge1_f(self.needle, answer), "needle_recall": 100 * recall,
                "found": recall >= FOUND_AT}

    def aggregate(self, predictions: list[dict], ctx) -> dict[str, float]:
        self._last_predictions = predictions  # info() reports found and empty cells
        metrics = {"rouge1_f": _mean(p["rouge1_f"] for p in predictions),
                   "needle_recall": _mean(p["needle_recall"] for p in predictions),
                   "needle_found": 100 * _mean(p["found"] for p in predictions)}
        for length in self.context_lengths:
            for name in ("rouge1_f", "needle_recall"):
                cell = [p[name] for p in predictions if p["context_length"] == length]
                if cell:
                    metrics[f"{name}@{length}"] = _mean(cell)
        return metrics

    def info(self, items, method, ctx) -> dict:
        preds = getattr(self, "_last_predictions", [])
        found, empty = sum(p["found"] for p in preds), sum(not p["prediction"] for p in preds)
        summary = (f"needle found in {found} of {len(preds)} cells (the answer holds at least half of the needle's own "
                   f"words: {', '.join(sorted(needle_words(self.needle, self.question)))})")
        out = {"score": "ROUGE-1 F (rouge-score, Porter stemmer) of answer vs needle, x100 (the papers' score; it "
                        "also counts the words the question shares with the needle)",
               "needle_recall": "fraction of the needle's own words (not in the question, no stopwords; stemmed) "
                                "found in the answer, x100; a cell is found at >= 50%",
               "cells": len(items), "haystack": self.haystack_dir or "python stdlib docstrings", "summary": summary}
        if preds and empty == len(preds):
            out["warning"] = (f"every one of the {empty} predictions is empty: the model stopped before its first "
                              f"token (stop_at_newline={self.stop_at_newline}, chat={self.chat}); the scores are 0 "
                              f"because nothing was generated, not because the needle was missed")
            out["summary"] = summary + "; WARNING: " + out["warning"]
            log.warning("needle: %s", out["warning"])
        return out

    def evaluate(self, lm, method, ctx) -> Scores:
        scores = super().evaluate(lm, method, ctx)
        if self.heatmap and scores.predictions:
            swept = ", ".join(o for o in getattr(ctx, "overrides", []) if not o.startswith(("task.heatmap", "logger")))
            title = f"{getattr(method, 'name', 'method')} · {lm.name}" + (f"\n{swept}" if swept else "")
            ctx.add_artifact(plot_heatmap(scores.predictions, ctx.path("needle_heatmap.png"), title=title))
        return scores

FOUND_AT = 0.5  # a cell counts as found when the answer holds at least half of the needle's own words
STOPWORDS = frozenset("a an and are as at be by for from in is it of on or that the this to was were with".split())


def needle_words(needle: str, question: str) -> set[str]:
    """The needle's own content words: stemmed tokens of the needle that the question does not
    contain, stopwords dropped (for the default needle: eat, sandwich, sit, dolor, park, sunni, day)."""
    return set(rouge_tokens(needle)) - set(rouge_tokens(question)) - STOPWORDS


def needle_recall(needle: str, question: str, answer: str) -> float:
    """Fraction of the needle's own words present in the answer: an answer that only repeats the
    question scores 0, whatever its ROUGE-1 against the needle."""
    words = needle_words(needle, question)
    if not words:
        return 0.0
    return len(words & set(rouge_tokens(answer))) / len(words)


def rouge1_f(reference: str, prediction: str) -> float:
    """ROUGE-1 F with Porter stemming, as rouge-score's RougeScorer(["rouge1"], use_stemmer=True)
    that KVCache-Factory uses."""
    if not prediction.strip():
        return 0.0
    return rouge1_f_stemmed(prediction, reference)


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


def plot_heatmap(predictions: list[dict], path: Path, title: str = "") -> Path:
    """Depth (rows) x context length (columns) heatmaps of the needle's own words found (needle_recall)
    and of ROUGE-1 F (the papers' score), each with a labelled colour bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    lengths = sorted({p["context_length"] for p in predictions})
    depths = sorted({p["depth"] for p in predictions})
    panels = [("needle_recall", "needle's own words found (%)"), ("rouge1_f", "ROUGE-1 F x100 (papers' score)")]
    width = max(2.6, 1.0 + 0.9 * len(lengths))  # a one-column grid stays readable
    fig, axes = plt.subplots(1, 2, figsize=(2 * width + 1.2, 1.6 + 0.45 * len(depths)), squeeze=False)
    for ax, (name, label) in zip(axes[0], panels):
        grid = np.full((len(depths), len(lengths)), np.nan)
        for p in predictions:
            grid[depths.index(p["depth"]), lengths.index(p["context_length"])] = p.get(name, np.nan)
        im = ax.imshow(grid, cmap="RdYlGn", vmin=0, vmax=100, aspect="auto")
        ax.set_xticks(range(len(lengths)), [str(x) for x in lengths])
        ax.set_yticks(range(len(depths)), [f"{d:g}%" for d in depths])
        ax.set_xlabel("context length (tokens)")
        ax.set_ylabel("needle depth")
        for i in range(len(depths)):
            for j in range(len(lengths)):
                if not np.isnan(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.0f}", ha="center", va="center", fontsize=8)
        bar = fig.colorbar(im, ax=ax, fraction=0.08)
        bar.set_label(label, fontsize=8)
        ax.set_title(name, fontsize=9)
    fig.suptitle(title or "needle retrieval", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
