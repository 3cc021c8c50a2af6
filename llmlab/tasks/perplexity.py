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
from tqdm.auto import tqdm

from llmlab.errors import UserError
from llmlab.tasks.base import Scores, Task


@dataclass
class Perplexity(Task):
    name: ClassVar[str] = "perplexity"

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

    @torch.inference_mode()
    def evaluate(self, lm, method, ctx) -> Scores:
        text, source = self.text()
        ids = lm.tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"][0]
        if self.max_tokens:
            ids = ids[: int(self.max_tokens)]
        window = int(self.max_length or lm.max_length)
        if self.stride <= 0 or self.stride > window:
            raise UserError(f"perplexity: stride must be in 1..max_length ({window}); got {self.stride}.")
        starts = list(range(0, max(len(ids) - 1, 1), self.stride))
        if ctx.limit:
            starts = starts[: int(ctx.limit)]
        nll_sum, counted, prev_end, predictions = 0.0, 0, 0, []
        with method.apply(lm):
            for begin in tqdm(starts, desc="perplexity", unit="window"):
                end = min(begin + window, len(ids))
                target_len = end - max(prev_end, begin + 1) if begin == 0 else end - prev_end
                if target_len <= 0:
                    break
                chunk = ids[begin:end][None].to(lm.device)
                logits = lm.model(input_ids=chunk).logits[0, :-1].float()
                targets = chunk[0, 1:]
                nll = torch.nn.functional.cross_entropy(logits[-target_len:], targets[-target_len:], reduction="sum")
                nll_sum += nll.item()
                counted += target_len
                predictions.append({"window_start": begin, "window_end": end, "scored_tokens": target_len,
                                    "nll_per_token": nll.item() / target_len})
                prev_end = end
                if end == len(ids):
                    break
        mean = nll_sum / max(counted, 1)
        return Scores(metrics={"perplexity": math.exp(mean), "nll_per_token": mean, "scored_tokens": float(counted)},
                      predictions=predictions, main_metric="perplexity",
                      info={"source": source, "window": window, "stride": self.stride})
