"""Instruction following as the ATKD release evaluates it (WHU-ZQH/ATKD inference.py).

The five sets of the paper (Dolly, Self-Instruct, Vicuna, Koala, WizardLM: `data/<set>/valid.jsonl`,
keys `instruction`, optional `input`, `output`). As inference.py:
- prompt "Human:\\n### Instruction:\\n{instruction}\\n\\n### Input:\\n{input}\\n\\nAssistant:\\n" (the
  Input block only when the input is non-empty);
- greedy decoding, `max_new_tokens` (a required argument there; 64 is its argparse default);
- a prediction of one character or none is replaced by "None", and ROUGE-L F is the `rouge` package's
  `Rouge().get_scores(hyps, refs, avg=True)["rouge-l"]["f"]` (x100 here), per set.

The paper's LLM-judge score, when `judge` names a model config (an OpenAI-compatible endpoint: `source: api`),
as gpt4_evalution.py and get_gpt4_score.py compute it: the judge (there gpt-3.5-turbo-1106, temperature 0, at most
64 tokens) reads the release's system prompt and "Question: <prompt>\\Assistant 1: <prediction>\\Assistant 2:
<reference>" (the prompt is the whole inference prompt, and the separators are a literal backslash before
"Assistant", as the release's f-string has them); its review's first line after "Assistant 1: " and last line
after "Assistant 2: " are the two scores, a review whose scores do not parse as numbers <= 10 is skipped, and
`<set>/judge_ratio` = sum of the model's scores / sum of the reference's. The release sends top_p 0 as well; at
temperature 0 that changes nothing, and llmlab's sampling keeps top_p in (0, 1].

Not the paper's, beside it: `<set>/ref_nll`, the reference answer's mean NLL per token after the prompt (and
`ref_nll` over all sets), a continuous score that moves when a few greedy answers' ROUGE-L does not (needs logits:
skipped for API and replay models, or with `reference_nll=false`).
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

register("judge_ratio", "LLM-judge score ratio: the sum of the judge's scores of the model's answers over the sum "
         "of its scores of the reference answers (ATKD gpt4_evalution.py / get_gpt4_score.py; unparsable reviews "
         "skipped)")
register("ref_nll", "the reference answer's mean NLL per token (and end-of-sequence) after the instruction prompt, "
         "teacher-forced; not the paper's metric", unit="nats/token", higher_is_better=False)
register("rougeL", "ROUGE-L F of the answer vs the reference, the `rouge` package averaged over examples as "
         "ATKD inference.py (answers of <= 1 character scored as \"None\"), x100", unit="x100")

SETS = ("dolly", "self-inst", "vicuna", "koala", "wizardlm")

# gpt4_evalution.py system_prompt, verbatim
JUDGE_SYSTEM = ("We would like to request your feedback on the performance of two AI assistants in response to the "
                "question. Please rate the helpfulness, relevance, accuracy, and level of detail of their responses. "
                "Each assistant receives an overall score on a scale of 1 to 10, where a higher score indicates better "
                "overall performance.\nPlease directly output a single line containing only one value indicating the "
                "score for Assistant 1 and 2, respectively, by strictly following this format: \"Assistant 1: "
                "<score>\nAssistant 2: <score>\". Please avoid any potential bias and ensure that the order in which the "
                "responses were presented does not affect your judgment.")


def judge_messages(prompt: str, prediction: str, reference: str) -> list[dict]:
    """gpt4_evalution.py's messages ("\\A" in its f-string is a backslash and an A, not a newline)."""
    user = f"Question: {prompt}\\Assistant 1: {prediction}\\Assistant 2: {reference}"
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


def parse_review(review: str) -> tuple[float, float] | None:
    """get_gpt4_score.py: the first line's score after "Assistant 1: ", the last line's after "Assistant 2: "."""
    if review == "None":
        return None
    lines = review.split("\n")
    _, _, first = lines[0].partition("Assistant 1: ")
    _, _, second = lines[-1].partition("Assistant 2: ")
    try:
        a, b = float(first), float(second)
    except ValueError:
        return None
    return (a, b) if a <= 10 and b <= 10 else None


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
    judge: dict | None = None              # a model config of the judge (source: api); null: no judge score
    judge_max_tokens: int = 64             # gpt4_evalution.py max_tokens=64
    reference_nll: bool = True             # also score the reference's NLL (ref_nll; needs logits)

    def check_data(self) -> None:
        if self.judge is not None and not dict(self.judge).get("source"):
            raise UserError("instruct: task.judge must be a model config with a source, e.g. {source: api, base_url: "
                            "https://api.openai.com/v1, model: gpt-3.5-turbo-1106} (the release's judge).")
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
        prompts = [prompt_for(r["instruction"], r.get("input")) for r in batch]
        answers = lm.generate(prompts, sampling, chat=False, keys=[r["_i"] for r in batch])
        nll = [None] * len(batch)
        if self.reference_nll and getattr(lm, "has_logits", False):
            from llmlab.models.probes import response_nll

            nll = response_nll(lm, [(p, r["output"]) for p, r in zip(prompts, batch)])
        return [{"set": r["_set"], "index": r["_i"], "instruction": r["instruction"], "reference": r["output"],
                 "prompt": p, "prediction": a[0].strip(), "ref_nll": n}
                for r, p, a, n in zip(batch, prompts, answers, nll)]

    def info(self, items, method, ctx) -> dict:
        return {"max_new_tokens": self.max_new_tokens, **({"judge": self._judge_info}
                                                          if getattr(self, "_judge_info", None) else {})}

    def aggregate(self, predictions: list[dict], ctx) -> dict[str, float]:
        metrics = {}
        for s in self.sets:
            chosen = [p for p in predictions if p["set"] == s]
            if chosen:
                metrics[f"{s}/rougeL"] = rouge_l([p["prediction"] for p in chosen], [p["reference"] for p in chosen])
        metrics["average"] = sum(metrics.values()) / max(1, len(metrics))
        scored = [p for p in predictions if p.get("ref_nll") is not None]
        for s in self.sets:
            chosen = [p["ref_nll"] for p in scored if p["set"] == s]
            if chosen:
                metrics[f"{s}/ref_nll"] = sum(chosen) / len(chosen)
        if scored:
            metrics["ref_nll"] = sum(p["ref_nll"] for p in scored) / len(scored)
        if self.judge is not None:
            metrics.update(self.judged(predictions, ctx))
        return metrics

    def judged(self, predictions: list[dict], ctx) -> dict[str, float]:
        """The judge's review of every prediction (recorded in it) and each set's score ratio."""
        from llmlab import models

        judge = models.load(dict(self.judge), seed=ctx.seed)
        sampling = Sampling(max_new_tokens=self.judge_max_tokens, temperature=0.0, seed=ctx.seed)
        reviews = judge.generate([judge_messages(p["prompt"], p["prediction"], p["reference"]) for p in predictions],
                                 sampling, chat=True)
        out = {}
        for p, review in zip(predictions, reviews):
            p["judge_review"] = review[0]
            p["judge_scores"] = parse_review(review[0])
        for s in self.sets:
            scores = [p["judge_scores"] for p in predictions if p["set"] == s and p["judge_scores"]]
            if scores and sum(b for _, b in scores) > 0:
                out[f"{s}/judge_ratio"] = sum(a for a, _ in scores) / sum(b for _, b in scores)
        self._judge_info = {"judge": dict(self.judge).get("model") or dict(self.judge).get("name"),
                            "judged": sum(1 for p in predictions if p["judge_scores"]),
                            "skipped_reviews": sum(1 for p in predictions if not p["judge_scores"]),
                            "usage": dict(getattr(judge, "usage", {}) or {})}
        return out
