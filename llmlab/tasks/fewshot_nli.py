"""Few-shot NLI as the calibration-data paper evaluates a pruned model (Bandari et al., EMNLP 2024;
abx393/llm-pruning-calibration-data lib/eval.py `eval_acc_esnli`, `eval_acc_rte`):

- the prompt: the release's fixed exemplars (e-SNLI: nine SNLI training pairs, three per premise, "Label:
  neutral"; RTE: three RTE training pairs, "Label: not entailment"), a blank line, then the test pair as
  "Premise: {p}\\nHypothesis: {h}\\nLabel:" (the template is `.strip()`ped: no trailing space);
- greedy generation (the release: at most 20 new tokens; its later batched version 5 for e-SNLI, 10 for
  RTE); the answer is the output before the first blank line, stripped;
- correct when it equals the gold label string exactly ("entailment" / "neutral" / "contradiction";
  RTE "entailment" / "not entailment"): `<subset>/label_match` (the paper's accuracy).
Beside it, not the paper's: `label_match_lenient` (the first line, lower-cased, starts with the gold label)
and `label_nll`, the gold label's per-token NLL after the same prompt (continuous; a small model sits near
chance on accuracy). `rationale: true` is the release's e-SNLI CoT template (three exemplars with
explanations; the answer is what follows "So the answer is " in the last sentence of the first paragraph).

Files: e-SNLI's release directory (line-aligned s1/s2/labels .test; the release reads the hub's esnli
test split, the same 9,824 pairs, but the release files are tokenized, "packages . " where the hub has
"packages."), GLUE RTE in the official TSV layout (dev: the test labels are hidden;
the release reads the hub's glue/rte validation split, the same 277 pairs).

The release's batched version of these two evaluators returns 0 after printing the first example (a
debugging `return 0` left in the loop): its numbers for these tasks, if they came from that version, are
not reproducible from the code; here the loop scores every pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from llmlab.errors import UserError
from llmlab.generation import Sampling
from llmlab.metrics.registry import register
from llmlab.models.probes import completions_with_gold_nll
from llmlab.tasks.base import BatchedTask

register("label_match", "the output before the first blank line, stripped, equals the gold label string exactly "
         "(the calibration-data paper's lib/eval.py eval_acc_esnli / eval_acc_rte), x100", unit="x100")
register("label_match_lenient", "the output's first line, lower-cased, starts with the gold label (not the paper's), x100",
         unit="x100")
register("label_nll", "mean negative log-likelihood per token of the gold label after the few-shot prompt "
         "(teacher-forced), nats", higher_is_better=False, unit="nats/token")

SUBSETS = ("esnli", "rte")

# the release's exemplars (lib/eval.py esnli_premise_hypothesis_label_template: SNLI training pairs; the tabs
# that end some of its lines are kept, as they reach the model)
_HORSE = "A person on a horse jumps over a broken down airplane."
_KIDS = "Children smiling and waving at camera"
_BOY = "A boy is jumping on skateboard in the middle of a red bridge."
ESNLI_SHOTS = [
    (_HORSE + "\t", "A person is training his horse for a competition.", "neutral"),
    (_HORSE + "\t", "A person is at a diner, ordering an omelette.\t", "contradiction"),
    (_HORSE + "\t", "A person is outdoors, on a horse.\t", "entailment"),
    (_KIDS, "They are smiling at their parents", "neutral"),
    (_KIDS, "There are children present", "entailment"),
    (_KIDS, "The kids are frowning\t", "contradiction"),
    (_BOY + "\t", "The boy skates down the sidewalk.", "contradiction"),
    (_BOY, "The boy does a skateboarding trick.\t", "entailment"),
    (_BOY, "The boy is wearing safety equipment.", "neutral"),
]
# esnli_premise_hypothesis_rationale_label_template (with explanations)
ESNLI_COT_SHOTS = [
    (_HORSE + "\t", "A person is training his horse for a competition.",
     "the person is not necessarily training his horse. So the answer is neutral."),
    (_HORSE + "\t", "A person is at a diner, ordering an omelette.\t",
     "One cannot be on a jumping horse cannot be a diner ordering food. So the answer is contradiction."),
    (_HORSE + "\t", "A person is outdoors, on a horse.\t",
     "a broken down airplane is outdoors. So the answer is entailment."),
]
# rte_premise_hypothesis_label_template (RTE training pairs)
RTE_SHOTS = [
    ("No Weapons of Mass Destruction Found in Iraq Yet.", "Weapons of Mass Destruction Found in Iraq.", "not entailment"),
    ("A place of sorrow, after Pope John Paul II died, became a place of celebration, as Roman Catholic faithful "
     "gathered in downtown Chicago to mark the installation of new Pope Benedict XVI.\t",
     "Pope Benedict XVI is the new leader of the Roman Catholic Church.", "entailment"),
    ("Herceptin was already approved to treat the sickest breast cancer patients, and the company said, Monday, it "
     "will discuss with federal regulators the possibility of prescribing the drug for more breast cancer patients.\t",
     "Herceptin can be used to treat breast cancer.", "entailment"),
]
ESNLI_LABELS = ("entailment", "neutral", "contradiction")


def pair_prompt(premise: str, hypothesis: str, label: str | None = None) -> str:
    return f"Premise: {premise}\nHypothesis: {hypothesis}\nLabel:" + (f" {label}" if label is not None else "")


@dataclass
class FewShotNLI(BatchedTask):
    name: ClassVar[str] = "fewshot_nli"
    needs_weights: ClassVar[bool] = False   # text in, text out (label_nll needs logits: skipped without them)
    limit_means: ClassVar[str] = "the first N test pairs"

    @property
    def main_metric(self) -> str:  # type: ignore[override]
        return f"{self.subset}/label_match"

    subset: str = "esnli"
    path: str | None = None      # e-SNLI release directory, or the GLUE directory with RTE/dev.tsv
    rationale: bool = False      # --eval_rationale (e-SNLI only): the CoT template
    max_new_tokens: int = 20     # lib/eval.py model.generate(max_new_tokens=20) (CoT: 256)
    batch_size: int = 8
    label_nll: bool = True       # also the gold label's per-token NLL (a continuous score)

    def check_data(self) -> None:
        if self.subset not in SUBSETS:
            raise UserError(f"task.subset={self.subset!r}; fewshot_nli has {', '.join(SUBSETS)}.")
        if self.rationale and self.subset != "esnli":
            raise UserError("fewshot_nli: rationale=true is the release's e-SNLI CoT template; RTE has none.")
        root = Path(str(self.path)) if self.path else None
        need = root / "s1.test" if self.subset == "esnli" and root else (root / "RTE" / "dev.tsv" if root else None)
        if need is None or not need.is_file():
            hint = ("the e-SNLI release directory (s1/s2/labels .test)" if self.subset == "esnli"
                    else "the GLUE directory in the official layout (RTE/dev.tsv)")
            raise UserError(f"fewshot_nli {self.subset}: task.path={self.path} has no {need.name if need else 'file'}. "
                            f"Give {hint}, e.g. ../shared/data/{'nli/esnli' if self.subset == 'esnli' else 'glue_official'}.")

    # -- data --------------------------------------------------------------------------------------------
    def exemplars(self) -> str:
        if self.subset == "rte":
            shots = RTE_SHOTS
        else:
            shots = ESNLI_COT_SHOTS if self.rationale else ESNLI_SHOTS
        return "\n\n".join(pair_prompt(p, h, lab) for p, h, lab in shots)

    def pairs(self) -> list[dict]:
        root = Path(str(self.path))
        if self.subset == "esnli":
            read = lambda part: (root / f"{part}.test").read_text(encoding="utf-8").splitlines()
            return [{"premise": p.strip(), "hypothesis": h.strip(), "gold": lab.strip()}
                    for p, h, lab in zip(read("s1"), read("s2"), read("labels")) if lab.strip() in ESNLI_LABELS]
        from llmlab.data import glue

        return [{"premise": r["text_a"], "hypothesis": r["text_b"],
                 "gold": ("entailment", "not entailment")[r["label"]]} for r in glue.load(root, "rte", "dev")]

    def items(self, lm, ctx) -> list[dict]:
        head = self.exemplars()
        return [{"index": i, **p, "prompt": f"{head}\n\n{pair_prompt(p['premise'], p['hypothesis'])}"}
                for i, p in enumerate(self.pairs())]

    # -- the loop ------------------------------------------------------------------------------------------
    def answer(self, output: str) -> str:
        first = output.split("\n\n")[0].strip()
        if not self.rationale:
            return first
        sentences = first.split(".")
        last = sentences[-2].strip() if len(sentences) > 1 else ""  # the release's split(".")[-2]
        return last.split("So the answer is ")[-1].strip()

    def run_batch(self, lm, method, batch: list[dict], ctx) -> list[dict]:
        tokens = 256 if self.rationale else self.max_new_tokens
        sampling = Sampling(max_new_tokens=tokens, temperature=0.0, seed=ctx.seed, stop=("\n\n",))
        outs, nll = completions_with_gold_nll(lm, [it["prompt"] for it in batch], [it["gold"] for it in batch], sampling,
                                              keys=[it["index"] for it in batch], score=self.label_nll)
        preds = []
        for it, out, n in zip(batch, outs, nll):
            answer = self.answer(out)
            first_line = out.strip().split("\n")[0].lower()
            preds.append({"index": it["index"], "premise": it["premise"], "hypothesis": it["hypothesis"],
                          "gold": it["gold"], "output": out, "answer": answer, "correct": answer == it["gold"],
                          "correct_lenient": first_line.startswith(it["gold"]), "label_nll": n})
        return preds

    def aggregate(self, predictions: list[dict], ctx) -> dict[str, float]:
        n = max(1, len(predictions))
        metrics = {"label_match": 100.0 * sum(p["correct"] for p in predictions) / n,
                   "label_match_lenient": 100.0 * sum(p["correct_lenient"] for p in predictions) / n}
        nll = [p["label_nll"] for p in predictions if p["label_nll"] is not None]
        if nll:
            metrics["label_nll"] = sum(nll) / len(nll)
        counts = {}
        for p in predictions:
            counts[p["answer"]] = counts.get(p["answer"], 0) + 1
        self._answers = dict(sorted(counts.items(), key=lambda kv: -kv[1])[:8])
        return {f"{self.subset}/{k}": v for k, v in metrics.items()}

    def info(self, items, method, ctx) -> dict:
        return {"subset": self.subset, "rationale": self.rationale, "exemplars": "lib/eval.py templates",
                "most_common_answers": getattr(self, "_answers", {})}
