"""Perplexity of a text with a sliding window (the Hugging Face perplexity guide's method).

The text is tokenized once; windows of `max_length` tokens advance by `stride`; each window
scores only the tokens not scored by the previous one (the earlier tokens are context), so
every token after the first is scored exactly once. perplexity = exp(mean NLL per token).

Text: a file, a directory of .txt files, a hub dataset (`dataset` + `split` + `text_field`,
only when the hub is allowed), or — when nothing is given — the standard library's docstrings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from llmlab.errors import UserError
from llmlab.metrics.registry import register
from llmlab.tasks.base import Task

register("perplexity", "exp(mean NLL per scored token), sliding windows (HF perplexity guide)", higher_is_better=False)
register("nll_per_token", "mean negative log-likelihood per scored token (nats)", higher_is_better=False)
register("scored_tokens", "tokens scored", higher_is_better=None, unit="tokens")


@dataclass
class Perplexity(Task):
    name: ClassVar[str] = "perplexity"
    unit: ClassVar[str] = "window"
    limit_means: ClassVar[str] = "the first N windows"
    main_metric: ClassVar[str] = "perplexity"

    path: str | None = None  # a text file or a directory of .txt files
    dataset: str | None = None  # a hub dataset id, e.g. wikitext (with `config`)
    config: str | None = None
    split: str = "test"
    text_field: str = "text"
    max_length: int | None = 1024  # window length in tokens (null: the model's max length)
    stride: int = 512
    max_tokens: int | None = 16384  # score at most this many tokens (null: all)

    def text(self) -> tuple[str, str]:
        if self.path:
            root = Path(self.path).expanduser()
            if root.is_file():
                return root.read_text(encoding="utf-8", errors="replace"), str(root)
            files = sorted(root.glob("*.txt")) if root.is_dir() else []
            if not files:
                raise UserError(f"perplexity: task.path={root} is neither a text file nor a directory with .txt "
                                f"files. Give a file or directory, or task.dataset=<hub id> when the hub is reachable.")
            return "\n\n".join(f.read_text(encoding="utf-8", errors="replace") for f in files), str(root)
        if self.dataset:
            try:
                import datasets

                ds = datasets.load_dataset(self.dataset, self.config, split=self.split)
            except Exception as err:
                raise UserError(f"perplexity: could not load hub dataset {self.dataset!r} ({type(err).__name__}). "
                                f"With no hub (HF_DATASETS_OFFLINE=1 is the default) use task.path=<text file or dir>; "
                                f"to allow the hub, set HF_DATASETS_OFFLINE=0.") from err
            return "\n\n".join(ds[self.text_field]), f"{self.dataset}:{self.config}:{self.split}"
        from llmlab.corpus import stdlib_text

        return stdlib_text(), "python stdlib docstrings"

    # -- the loop (llmlab.tasks.base.Task.evaluate) --------------------------------------------
    def check_data(self) -> None:
        if self.path and not Path(self.path).expanduser().exists():
            raise UserError(f"perplexity: task.path={self.path} does not exist. Give a text file or a directory of "
                            f".txt files, or task.dataset=<hub id> when the hub is reachable.")

    def items(self, lm, ctx) -> list[tuple[int, int, int]]:
        """Windows (begin, end, scored tokens): each scores the tokens the previous one did not."""
        text, self._source = self.text()
        self._ids = lm.tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"][0]
        if self.max_tokens:
            self._ids = self._ids[: int(self.max_tokens)]
        n = len(self._ids)
        self._window = int(self.max_length or lm.max_length)
        if self.stride <= 0 or self.stride > self._window:
            raise UserError(f"perplexity: stride must be in 1..max_length ({self._window}); got {self.stride}.")
        windows, prev_end = [], 0
        for begin in range(0, max(n - 1, 1), self.stride):
            end = min(begin + self._window, n)
            scored = end - max(prev_end, begin + 1) if begin == 0 else end - prev_end
            if scored <= 0:
                break
            windows.append((begin, end, scored))
            prev_end = end
            if end == n:
                break
        return windows

    @torch.inference_mode()
    def run_one(self, lm, method, window, ctx) -> dict:
        begin, end, scored = window
        chunk = self._ids[begin:end][None].to(lm.device)
        with method.apply(lm):
            logits = lm.model(input_ids=chunk).logits[0, :-1].float()
        targets = chunk[0, 1:]
        nll = torch.nn.functional.cross_entropy(logits[-scored:], targets[-scored:], reduction="sum").item()
        return {"window_start": begin, "window_end": end, "scored_tokens": scored, "nll": nll,
                "nll_per_token": nll / scored}

    def aggregate(self, predictions: list[dict], ctx) -> dict[str, float]:
        counted = sum(p["scored_tokens"] for p in predictions)
        mean = sum(p["nll"] for p in predictions) / max(counted, 1)
        return {"perplexity": math.exp(mean), "nll_per_token": mean, "scored_tokens": float(counted)}

    def info(self, items, method, ctx) -> dict:
        return {"source": self._source, "window": self._window, "stride": self.stride}
