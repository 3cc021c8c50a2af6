"""Instruction following as the ATKD release evaluates it (WHU-ZQH/ATKD inference.py).

The five sets of the paper (Dolly, Self-Instruct, Vicuna, Koala, WizardLM: `data/<set>/valid.jsonl`,
keys `instruction`, optional `input`, `output`). As inference.py:
- prompt "Human:\\n### Instruction:\\n{instruction}\\n\\n### Input:\\n{input}\\n\\nAssistant:\\n" (the
  Input block only when the input is non-empty);
- greedy decoding, `max_new_tokens` (a required argument there; 64 is its argparse default);
- a prediction of one character or none is replaced by "None", and ROUGE-L F is the `rouge` package's
  `Rouge().get_scores(hyps, refs, avg=True)["rouge-l"]["f"]` (x100 here), per set.
The paper's LLM-judge score needs a judge endpoint; it is not computed here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from llmlab.data.instruct import prompt_for
from llmlab.errors import UserError
from llmlab.generation import Sampling
from llmlab.metrics.registry import register
from llmlab.tasks.base import BatchedTask

register("rougeL", "ROUGE-L F of the answer vs the reference, the `rouge` package averaged over examples as "
         "ATKD inference.py (answers of <= 1 character scored as \"None\"), x100", unit="x100")

SETS = ("dolly", "self-inst", "vicuna", "koala", "wizardlm")


def rouge_l(hyps: list[str], refs: list[str]) -> float:
    from rouge import Rouge

    hyps = [h if len(h) > 1 else "None" for h in hyps]
    return 100.0 * Rouge().get_scores(hyps, refs, avg=True)["rouge-l"]["f"]


@dataclass
class Instruct(BatchedTask):
    name: ClassVar[str] = "instruct"
    needs_weights: ClassVar[bool] = False
    limit_means: ClassVar[str] = "the first N examples of each set"
    main_metric: ClassVar[str] = "average"

    data_dir: str | None = None            # a dir holding <set>/valid.jsonl (WHU-ZQH/ATKD data/)
    sets: list = field(default_factory=lambda: list(SETS))
    max_new_tokens: int = 256
    batch_size: int = 8

    def check_data(self) -> None:
        if not self.data_dir:
            raise UserError("instruct: no data. Set task.data_dir=<dir with dolly/valid.jsonl, self-inst/valid.jsonl, "
                            "vicuna/valid.jsonl, koala/valid.jsonl, wizardlm/valid.jsonl> (WHU-ZQH/ATKD data/).")
        missing = [s for s in self.sets if not (Path(str(self.data_dir)) / s / "valid.jsonl").is_file()]
        if missing:
            raise UserError(f"instruct: {self.data_dir} lacks {', '.join(f'{s}/valid.jsonl' for s in missing)}; "
                            f"give task.data_dir=<the ATKD data/ dir> or task.sets=[...] with the sets you have.")

    def items(self, lm, ctx) -> list[dict]:
        self.check_data()
        out = []
        for s in self.sets:
            rows = [json.loads(line) for line in (Path(str(self.data_dir)) / s / "valid.jsonl").read_text(
                encoding="utf-8").splitlines() if line.strip()]
            out += [dict(r, _set=s, _i=i) for i, r in enumerate(rows)]
        return out

    def limited(self, items: list, limit: int | None) -> list:
        return items if not limit else [r for r in items if r["_i"] < int(limit)]

    def run_batch(self, lm, method, batch, ctx) -> list[dict]:
        sampling = Sampling(max_new_tokens=self.max_new_tokens, temperature=0.0, seed=ctx.seed)
        answers = lm.generate([prompt_for(r["instruction"], r.get("input")) for r in batch], sampling, chat=False,
                              keys=[r["_i"] for r in batch])
        return [{"set": r["_set"], "index": r["_i"], "instruction": r["instruction"], "reference": r["output"],
                 "prediction": a[0].strip()} for r, a in zip(batch, answers)]

    def info(self, items, method, ctx) -> dict:
        return {"max_new_tokens": self.max_new_tokens}

    def aggregate(self, predictions: list[dict], ctx) -> dict[str, float]:
        metrics = {}
        for s in self.sets:
            chosen = [p for p in predictions if p["set"] == s]
            if chosen:
                metrics[f"{s}/rougeL"] = rouge_l([p["prediction"] for p in chosen], [p["reference"] for p in chosen])
        metrics["average"] = sum(metrics.values()) / max(1, len(metrics))
        return metrics
