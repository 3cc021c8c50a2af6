"""MQuAKE: multi-hop questions about edited facts (Zhong et al. 2023, princeton-nlp/MQuAKE).

Data: the original JSON files (MQuAKE-CF-3k-v2.json, MQuAKE-CF-3k.json, MQuAKE-CF.json,
MQuAKE-T.json), a list of cases with `requested_rewrite[{prompt ("{}" marks the subject),
subject, target_new{str}, target_true{str}, question}]`, `questions` (3 multi-hop questions),
`new_answer`, `new_answer_alias`, `single_hops`, `new_single_hops[{question, cloze, answer,
answer_alias}]` and `orig`.

Edits are applied in batches of `edit_batch_size` cases (1, 100, ... or `all`), as in the paper's
Table 3/4: every requested rewrite of the batch is written at once, each case of the batch is then
evaluated, and the weights are restored before the next batch. Scores (greedy generation, then a
normalized match against the answer or any alias):

  edit_wise/cloze_match       edited facts recalled: the rewrite's cloze statement, zero-shot (the
                              format the edit was written in, MQuAKE README "Edited facts"), whose
                              generation starts with target_new; fraction of rewrites
  instance_wise/fewshot_em    cases whose new single-hop facts (new_single_hops) are all recalled:
                              each question asked with the few-shot prompt below
  multihop/fewshot_em         cases where any of the 3 multi-hop questions gets new_answer or an
                              alias (the paper's multi-hop accuracy), few-shot standard prompting

Few-shot prompt: MQuAKE prompts/multihop-prompts.txt (standard prompting), then "Q: {question} A:".
The paper asks unedited single hops with per-relation 8-shot prompts (prompts/rel-prompts.json);
here the same multi-hop demonstrations serve (they include single-hop questions).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from llmlab.capabilities import Answer, Editing, OwnAnswering
from llmlab.data import mquake
from llmlab.data.mquake import Case
from llmlab.errors import UserError
from llmlab.metrics.editing import answer_matches, answer_tokens
from llmlab.metrics.registry import register
from llmlab.models.probes import generate_answers
from llmlab.tasks.base import Task
from llmlab.tasks.editing import editor_of, prompt_under, read_json_data

# princeton-nlp/MQuAKE prompts/multihop-prompts.txt (standard prompting), verbatim
MULTIHOP_PROMPT = """Q: What is the country where The Rotunda is located? A: United States of America
Q: In which country was Tohar Butbul granted citizenship? A: Israel
Q: Who was Nissan 200SX created by? A: Nissan
Q: What continent is the country where Prickly Pear grows located in? A: Europe
Q: What is the capital of the country where Plainfield Town Hall is located? A: Washington, D.C.
Q: In which country is the company that created Nissan 200SX located? A: Japan
Q: Who was Dodge Ram SRT-10 created by? Dodge
Q: Who is the spouse of Joe Biden? A: Jill Biden
Q: Which continent is the country where the director of "My House Husband: Ikaw Na!" was educated located in? A: Asia
Q: What country was the location of the Battle of Pressburg? A: Hungary
Q: Who is the spouse of the US president? A: Jill Biden
Q: Who has ownership of the developer of the Chevrolet Corvette (C4)? A: General Motors
Q: Who is Joe Biden married to? A: Jill Biden
Q: What is the country of citizenship of Charles II of Spain? A: Spain
Q: Who was Chevrolet Biscayne created by? A: Chevrolet
Q: What is the name of the current head of state in United Kingdom? A: Elizabeth II"""

def starts_with_answer(generation: str, answers: list[str]) -> bool:
    """The generation's first tokens are one of the answers (for zero-shot cloze completions)."""
    pred = answer_tokens(generation)
    for answer in answers:
        gold = answer_tokens(answer)
        if gold and pred[: len(gold)] == gold:
            return True
    return False


METRICS = {
    "multihop/fewshot_em": register("fewshot_em", "fraction of cases answered right (greedy answer == answer or "
                                    "an alias, normalized); multihop: any of the 3 questions, instance_wise: all new "
                                    "single hops", unit="0-1"),
    "multihop/exact": register("exact", "fraction of cases where the answer string equals the new answer or an "
                               "alias exactly (case-sensitive, no normalization), as the official MQuAKE and "
                               "Reason-KE evaluations compare them", unit="0-1"),
    "edit_wise/cloze_match": register("cloze_match", "fraction of rewrites whose zero-shot cloze generation starts "
                                      "with target_new", unit="0-1"),
}


@dataclass
class MQuAKE(Task):
    name: ClassVar[str] = "mquake"
    requires: ClassVar[type] = Editing
    honours: ClassVar[tuple] = (Editing, OwnAnswering)
    unit: ClassVar[str] = "batch"
    limit_means: ClassVar[str] = "the first N cases (edited in batches of edit_batch_size)"
    main_metric: ClassVar[str] = "multihop/fewshot_em"

    data_path: str | None = None
    hub_id: str | None = None
    hub_file: str = "MQuAKE-CF-3k-v2.json"  # the paper's current results (README, 2024/9 update)
    edit_batch_size: Any = 1  # cases edited at once: 1, 100, 1000, ... or "all"
    chat: bool = False
    max_new_tokens: int = 16
    fewshot_prompt: str | None = None  # null: MQuAKE's multihop-prompts.txt; or a path to a prompt file
    demo_pool: bool = True  # offer the other cases' rewrites to the editor (IKE demonstrations)

    def batch_size(self, n: int) -> int:
        if self.edit_batch_size in (None, "all", 0):
            return max(1, n)
        try:
            size = int(self.edit_batch_size)
        except (TypeError, ValueError):
            size = -1
        if size < 1:
            raise UserError(f"mquake: task.edit_batch_size must be a positive integer or 'all'; got {self.edit_batch_size!r}.")
        return size

    def prompt_text(self) -> str:
        if not self.fewshot_prompt:
            return MULTIHOP_PROMPT
        path = Path(self.fewshot_prompt).expanduser()
        if not path.exists():
            raise UserError(f"mquake: task.fewshot_prompt={path} does not exist (null uses MQuAKE's multihop prompt).")
        return path.read_text(encoding="utf-8").rstrip("\n")

    def check_data(self) -> None:
        self._cases = self.load_cases()
        self.batch_size(len(self._cases))
        self.prompt_text()

    def load_cases(self) -> list[Case]:
        return mquake.parse_cases(read_json_data(self.name, self.data_path, self.hub_id, self.hub_file), self.name)

    # -- the loop (llmlab.tasks.base.Task.evaluate) --------------------------------------------
    def items(self, lm, ctx) -> list[Case]:
        if not hasattr(self, "_cases"):
            self.check_data()
        self._fewshot = self.prompt_text()
        self._offered = False
        return self._cases

    def limited(self, items: list, limit: int | None) -> list[list[Case]]:
        """The first `limit` cases, in batches of `edit_batch_size` (edited together)."""
        cases = items[: int(limit)] if limit else items
        size = self.batch_size(len(cases))
        self._size = size
        return [cases[i:i + size] for i in range(0, len(cases), size)]

    def run_one(self, lm, method, batch: list[Case], ctx) -> list[dict]:
        editor = editor_of(method)
        if editor is not None and self.demo_pool and not self._offered:
            with ctx.timer("demonstrations"):
                editor.prepare_demonstrations(lm, [r for c in self._cases for r in c.requests])
            self._offered = True
        requests = [r for c in batch for r in c.requests]
        if editor is None:
            return [self.score_case(lm, None, requests, case) for case in batch]
        with editor.edit(lm, requests) as edited:
            return [self.score_case(edited, editor, requests, case) for case in batch]

    def aggregate(self, predictions: list[dict], ctx) -> dict[str, float]:
        n = max(1, len(predictions))
        rewrites = sum(len(p["edits"]) for p in predictions)
        return {
            "multihop/fewshot_em": sum(p["multihop_correct"] for p in predictions) / n,
            "multihop/exact": sum(p["multihop_exact"] for p in predictions) / n,
            "edit_wise/cloze_match": sum(e["correct"] for p in predictions for e in p["edits"]) / max(1, rewrites),
            "instance_wise/fewshot_em": sum(p["instance_correct"] for p in predictions) / n,
        }

    def info(self, batches, method, ctx) -> dict:
        answers = (f"the editor's own protocol: {type(method).__name__}" if isinstance(method, OwnAnswering)
                   else "few-shot prompting (MQuAKE multihop prompt)")
        return {"edit_batch_size": self._size, "cases": sum(len(b) for b in batches), "batches": len(batches),
                "answers": answers, "metrics": {name: m.description for name, m in METRICS.items()}}

    def ask(self, lm, editor, requests, questions: list[str]) -> list[Answer]:
        """The answers to `questions` under the edits: the editor's own protocol when it has one
        (Reason-KE's chains), else few-shot prompting; decoded as one batch."""
        if isinstance(editor, OwnAnswering):
            return editor.answers(lm, questions, requests)
        prompts = [prompt_under(editor, lm, f"{self._fewshot}\nQ: {q} A:", requests) for q in questions]
        return [Answer(text=a, output=a) for a in generate_answers(lm, prompts, self.chat, self.max_new_tokens)]

    def score_case(self, lm, editor, requests, case: Case) -> dict:
        clozes = generate_answers(lm, [prompt_under(editor, lm, r.prompt, requests) for r in case.requests],
                                  self.chat, self.max_new_tokens)
        edits = [{"cloze": r.prompt, "target_new": r.target_new, "generation": generation,
                  "correct": starts_with_answer(generation, [r.target_new])}
                 for r, generation in zip(case.requests, clozes)]
        asked = [h.question for h in case.single_hops] + list(case.questions)
        answers = self.ask(lm, editor, requests, asked)
        hops = [{"question": h.question, "generation": a.text, "correct": answer_matches(a.text, h.answers)}
                for h, a in zip(case.single_hops, answers)]
        multihop = [{"question": q, "generation": a.text, "correct": answer_matches(a.lenient or a.text, case.answers),
                     "exact": a.text in case.answers}
                    for q, a in zip(case.questions, answers[len(hops):])]
        if isinstance(editor, OwnAnswering):  # keep the chains the answers were parsed from
            for record, a in zip(hops + multihop, answers):
                record["output"], record["lenient"] = a.output, a.lenient
        return {"case_id": case.case_id, "new_answer": case.answers[0], "edits": edits, "single_hops": hops,
                "questions": multihop, "multihop_correct": any(q["correct"] for q in multihop),
                "multihop_exact": any(q["exact"] for q in multihop),
                "instance_correct": bool(hops) and all(h["correct"] for h in hops)}
