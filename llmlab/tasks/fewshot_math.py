"""Few-shot arithmetic word problems, as the calibration-data paper evaluates a pruned model
(Bandari et al., EMNLP 2024; abx393/llm-pruning-calibration-data lib/eval.py `eval_acc_gsm8k`,
`eval_acc_svamp`, `eval_acc_mawps`):

- the prompt: three fixed exemplars, GSM8K's first three training problems with their final answers
  ("Question: ...\\nAnswer: 72", blank line between), then "Question: {q}\\nAnswer:" (the template is
  `.strip()`ped, so no trailing space); SVAMP and MAWPS use the same GSM8K exemplars. `rationale: true`
  is the release's CoT template (the exemplars' worked solutions, lines joined, "#### answer");
- greedy decoding, at most 256 new tokens (generation stops at the first blank line, where the release's
  parse cuts anyway);
- the answer: the text before the first blank line, after the last "####"; correct when its value equals
  the gold's, both evaluated as arithmetic (the release calls `eval`; llmlab.metrics.arithmetic evaluates
  the same grammar safely). The gold is GSM8K's final answer, SVAMP's equation ("( 76.0 - 25.0 )").
Also recorded: `exact_match_lenient` (the first number in the answer line; not the paper's) and
`answer_nll`, the gold answer's per-token NLL after the same prompt: a continuous score that moves
when a small model's exact match sits at zero.

Files: GSM8K `test.jsonl` (and `train.jsonl` for the exemplars), SVAMP `SVAMP.json` (all 1,000
problems: the release reads the hub's ChilleD/SVAMP test split of 300), MAWPS a cv_mawps csv (its
numberK placeholders filled from `Numbers`, gold = `Answer`; the release reads MU-NLPC/Calc-mawps test).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from llmlab.errors import UserError
from llmlab.generation import Sampling
from llmlab.metrics.arithmetic import first_number, release_answer, same_value, value
from llmlab.models.probes import completions_with_gold_nll
from llmlab.tasks.base import BatchedTask

SUBSETS = ("gsm8k", "svamp", "mawps")


@dataclass
class FewShotMath(BatchedTask):
    name: ClassVar[str] = "fewshot_math"
    needs_weights: ClassVar[bool] = False   # text in, text out (answer_nll needs logits: skipped without them)
    limit_means: ClassVar[str] = "the first N test problems"

    @property
    def main_metric(self) -> str:  # type: ignore[override]
        return f"{self.subset}/exact_match_eval"

    subset: str = "gsm8k"
    path: str | None = None            # the test file (gsm8k test.jsonl, SVAMP.json, a cv_mawps csv)
    exemplars_path: str | None = None  # GSM8K train.jsonl: its first three problems are the exemplars
    rationale: bool = False            # --eval_rationale: the CoT template
    max_new_tokens: int = 256          # lib/eval.py model.generate(max_new_tokens=256)
    batch_size: int = 8
    answer_nll: bool = True            # also score the gold answer's likelihood (needs logits)

    def check_data(self) -> None:
        if self.subset not in SUBSETS:
            raise UserError(f"task.subset={self.subset!r}; fewshot_math has {', '.join(SUBSETS)}.")
        for what, p, hint in (("path", self.path, {"gsm8k": "GSM8K test.jsonl", "svamp": "SVAMP.json",
                                                   "mawps": "a cv_mawps fold csv"}[self.subset]),
                              ("exemplars_path", self.exemplars_path, "GSM8K train.jsonl (its first three problems)")):
            if not p or not Path(str(p)).is_file():
                raise UserError(f"fewshot_math: task.{what}={p} is not a file. Give {hint} "
                                f"(e.g. ../shared/data/reasoning/...).")

    # -- data ------------------------------------------------------------------------------------------
    def exemplars(self) -> str:
        rows = [json.loads(l) for l in Path(str(self.exemplars_path)).open(encoding="utf-8") if l.strip()][:3]
        shots = []
        for r in rows:
            rationale, label = (s.strip() for s in r["answer"].split("####"))
            answer = f"{' '.join(rationale.splitlines())} #### {label}" if self.rationale else label
            shots.append(f"Question: {r['question']}\nAnswer: {answer}")
        return "\n\n".join(shots)

    def problems(self) -> list[dict]:
        path = Path(str(self.path))
        if self.subset == "gsm8k":
            rows = [json.loads(l) for l in path.open(encoding="utf-8") if l.strip()]
            return [{"question": r["question"], "gold": r["answer"].split("####")[-1].strip()} for r in rows]
        if self.subset == "svamp":
            return [{"question": f"{r['Body']} {r['Question']}", "gold": str(r["Equation"])}
                    for r in json.loads(path.read_text(encoding="utf-8"))]
        with path.open(encoding="utf-8", newline="") as f:
            out = []
            for r in csv.DictReader(f):
                q = r["Question"]
                for k, n in sorted(enumerate(r["Numbers"].split()), reverse=True):  # number10 before number1
                    q = q.replace(f"number{k}", _plain(n))
                out.append({"question": q, "gold": _plain(r["Answer"])})
            return out

    def items(self, lm, ctx) -> list[dict]:
        head = self.exemplars()
        return [{"index": i, **p, "prompt": f"{head}\n\nQuestion: {p['question']}\nAnswer:"}
                for i, p in enumerate(self.problems())]

    # -- the loop ----------------------------------------------------------------------------------------
    def run_batch(self, lm, method, batch: list[dict], ctx) -> list[dict]:
        sampling = Sampling(max_new_tokens=self.max_new_tokens, temperature=0.0, seed=ctx.seed, stop=("\n\n",))
        outs, nll = completions_with_gold_nll(lm, [it["prompt"] for it in batch], [it["gold"] for it in batch], sampling,
                                              keys=[it["index"] for it in batch], score=self.answer_nll)
        preds = []
        for it, out, n in zip(batch, outs, nll):
            answer = release_answer(out)
            lenient = first_number(answer.split("\n")[0])
            gold = value(it["gold"])
            preds.append({"index": it["index"], "question": it["question"], "gold": it["gold"], "output": out,
                          "answer": answer, "correct": same_value(answer, it["gold"]),
                          "correct_lenient": lenient is not None and isinstance(gold, (int, float)) and
                          abs(lenient - gold) < 1e-6, "answer_nll": n})
        return preds

    def aggregate(self, predictions: list[dict], ctx) -> dict[str, float]:
        """`<subset>/exact_match_eval` (main), `<subset>/exact_match_lenient`, `<subset>/answer_nll`: named by subset,
        so one table can hold GSM8K, SVAMP and MAWPS columns side by side."""
        n = max(1, len(predictions))
        metrics = {"exact_match_eval": 100.0 * sum(p["correct"] for p in predictions) / n,
                   "exact_match_lenient": 100.0 * sum(p["correct_lenient"] for p in predictions) / n}
        nll = [p["answer_nll"] for p in predictions if p["answer_nll"] is not None]
        if nll:
            metrics["answer_nll"] = sum(nll) / len(nll)
        return {f"{self.subset}/{k}": v for k, v in metrics.items()}

    def info(self, items, method, ctx) -> dict:
        return {"subset": self.subset, "rationale": self.rationale, "exemplars": "GSM8K train[:3]"}


def _plain(number: str) -> str:
    """"56.0" -> "56" (the problem text as written), other numbers unchanged."""
    try:
        f = float(number)
    except ValueError:
        return number
    return str(int(f)) if f.is_integer() else number
