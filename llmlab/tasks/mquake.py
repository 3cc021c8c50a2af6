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

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from tqdm.auto import tqdm

from llmlab.errors import UserError
from llmlab.methods.editing.base import EditRequest
from llmlab.metrics.editing import answer_matches, answer_tokens
from llmlab.tasks.base import Scores, Task
from llmlab.tasks.editing import (
    applied,
    edit_rate,
    editor_of,
    generate_answers,
    offer_demonstrations,
    prompt_under,
    read_json_data,
)

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

CASE_KEYS = ("requested_rewrite", "questions", "new_answer", "new_single_hops")
REWRITE_KEYS = ("prompt", "subject", "target_new", "target_true")


@dataclass
class Case:
    case_id: Any
    requests: list[EditRequest]
    questions: list[str]
    answers: list[str]  # new_answer + new_answer_alias
    single_hops: list[tuple[str, list[str]]]  # new single hops: (question, answers)


def _str(value, where: str, key: str) -> str:
    if not isinstance(value, str):
        raise UserError(f"mquake: {where}: {key!r} should be a string, got {type(value).__name__} ({value!r:.80}).")
    return value


def _label(value, where: str, key: str) -> str:
    """A target in Counterfact style {"str": ..., "id": ...} (a bare string is accepted too)."""
    if isinstance(value, dict):
        if "str" not in value:
            raise UserError(f"mquake: {where}: {key!r} should be an object with 'str' (and 'id'); got {value!r:.80}.")
        value = value["str"]
    return _str(value, where, key)


def parse_case(raw, i: int) -> Case:
    where = f"record {i}"
    if not isinstance(raw, dict):
        raise UserError(f"mquake: {where} should be an object, got {type(raw).__name__}.")
    missing = [k for k in CASE_KEYS if k not in raw]
    if missing:
        raise UserError(f"mquake: {where} (case_id {raw.get('case_id')}) lacks key(s) {', '.join(map(repr, missing))}; "
                        f"MQuAKE cases have requested_rewrite, questions, new_answer, new_answer_alias, new_single_hops.")
    rewrites = raw["requested_rewrite"]
    if not isinstance(rewrites, list) or not rewrites:
        raise UserError(f"mquake: {where}: 'requested_rewrite' should be a non-empty list of rewrites.")
    requests = []
    for j, rw in enumerate(rewrites):
        at = f"{where} requested_rewrite[{j}]"
        if not isinstance(rw, dict) or any(k not in rw for k in REWRITE_KEYS):
            have = list(rw) if isinstance(rw, dict) else type(rw).__name__
            raise UserError(f"mquake: {at} needs keys {', '.join(REWRITE_KEYS)}; has {have}.")
        template, subject = _str(rw["prompt"], at, "prompt"), _str(rw["subject"], at, "subject")
        if "{}" not in template:
            raise UserError(f"mquake: {at}: 'prompt' should contain '{{}}' where the subject goes; got {template!r}.")
        requests.append(EditRequest(
            prompt=template.format(subject), subject=subject,
            target_new=_label(rw["target_new"], at, "target_new"),
            target_true=_label(rw["target_true"], at, "target_true"),
            extra={"case_id": raw.get("case_id", i), "question": rw.get("question"), "new_answer": raw.get("new_answer")},
        ))
    questions = raw["questions"]
    if not isinstance(questions, list) or not questions or not all(isinstance(q, str) for q in questions):
        raise UserError(f"mquake: {where}: 'questions' should be a list of strings.")
    aliases = raw.get("new_answer_alias") or []
    if not isinstance(aliases, list):
        raise UserError(f"mquake: {where}: 'new_answer_alias' should be a list of strings.")
    hops = []
    for j, hop in enumerate(raw["new_single_hops"] or []):
        at = f"{where} new_single_hops[{j}]"
        if not isinstance(hop, dict) or "question" not in hop or "answer" not in hop:
            raise UserError(f"mquake: {at} needs 'question' and 'answer' (and 'answer_alias').")
        hops.append((_str(hop["question"], at, "question"),
                     [_str(hop["answer"], at, "answer")] + [a for a in hop.get("answer_alias") or [] if isinstance(a, str)]))
    return Case(case_id=raw.get("case_id", i), requests=requests, questions=list(questions),
                answers=[_str(raw["new_answer"], where, "new_answer")] + [a for a in aliases if isinstance(a, str)],
                single_hops=hops)


def starts_with_answer(generation: str, answers: list[str]) -> bool:
    """The generation's first tokens are one of the answers (for zero-shot cloze completions)."""
    pred = answer_tokens(generation)
    for answer in answers:
        gold = answer_tokens(answer)
        if gold and pred[: len(gold)] == gold:
            return True
    return False


@dataclass
class MQuAKE(Task):
    name: ClassVar[str] = "mquake"

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

    def load_cases(self) -> list[Case]:
        data = read_json_data(self.name, self.data_path, self.hub_id, self.hub_file)
        if not isinstance(data, list):
            raise UserError(f"mquake: expected a JSON list of cases, got {type(data).__name__}.")
        return [parse_case(raw, i) for i, raw in enumerate(data)]

    def ask(self, lm, editor, requests, questions: list[str], fewshot: str) -> list[str]:
        """The answers to `questions` under the edits, decoded as one batch."""
        own = getattr(editor, "answers", None)  # editors with their own answering protocol (Reason-KE chains)
        if own is not None:
            return own(lm, questions, requests)
        prompts = [prompt_under(editor, lm, f"{fewshot}\nQ: {q} A:", requests) for q in questions]
        return generate_answers(lm, prompts, self.chat, self.max_new_tokens)

    def evaluate(self, lm, method, ctx) -> Scores:
        editor = editor_of(method, self.name)
        cases = self.load_cases()
        selected = cases[: ctx.limit] if ctx.limit else cases
        size = self.batch_size(len(selected))
        fewshot = self.prompt_text()
        if editor is not None and self.demo_pool:
            with ctx.timer("demonstrations"):
                offer_demonstrations(editor, lm, [r for c in cases for r in c.requests])
        totals = defaultdict(float)
        predictions, clock = [], {}
        batches = [selected[i:i + size] for i in range(0, len(selected), size)]
        for batch in tqdm(batches, desc=f"mquake batches of {size}", leave=False):
            requests = [r for c in batch for r in c.requests]
            with applied(editor, lm, requests, clock) as edited:
                for case in batch:
                    record = self.score_case(edited, editor, requests, case, fewshot)
                    totals["rewrites"] += len(case.requests)
                    totals["edit_wise"] += sum(r["correct"] for r in record["edits"])
                    totals["instance_wise"] += record["instance_correct"]
                    totals["multihop"] += record["multihop_correct"]
                    predictions.append(record)
        n = max(1, len(selected))
        metrics = {
            "multihop/fewshot_em": totals["multihop"] / n,
            "edit_wise/cloze_match": totals["edit_wise"] / max(1, totals["rewrites"]),
            "instance_wise/fewshot_em": totals["instance_wise"] / n,
        }
        ctx.extra.update(edit_rate(editor, clock))
        info = {"edit_batch_size": size, "cases": len(selected), "batches": len(batches),
                "answers": ("the editor's own protocol: " + type(editor).__name__ if getattr(editor, "answers", None)
                            else "few-shot prompting (MQuAKE multihop prompt)"),
                "metrics": {"multihop/fewshot_em": "any of the 3 questions: greedy answer == new_answer or alias",
                            "edit_wise/cloze_match": "rewrite cloze, zero-shot: generation starts with target_new",
                            "instance_wise/fewshot_em": "all new single hops answered (answer or alias)"}}
        return Scores(metrics=metrics, predictions=predictions, main_metric="multihop/fewshot_em", info=info)

    def score_case(self, lm, editor, requests, case: Case, fewshot: str) -> dict:
        clozes = generate_answers(lm, [prompt_under(editor, lm, r.prompt, requests) for r in case.requests],
                                  self.chat, self.max_new_tokens)
        edits = [{"cloze": r.prompt, "target_new": r.target_new, "generation": generation,
                  "correct": starts_with_answer(generation, [r.target_new])}
                 for r, generation in zip(case.requests, clozes)]
        asked = [q for q, _ in case.single_hops] + list(case.questions)
        generations = self.ask(lm, editor, requests, asked, fewshot)
        chains = list(getattr(editor, "last_outputs", None) or [])  # raw outputs, when the editor keeps them
        hops = [{"question": q, "generation": g, "correct": answer_matches(g, answers)}
                for (q, answers), g in zip(case.single_hops, generations)]
        multihop = [{"question": q, "generation": g, "correct": answer_matches(g, case.answers)}
                    for q, g in zip(case.questions, generations[len(hops):])]
        if len(chains) == len(asked):
            for record, chain in zip(hops + multihop, chains):
                record["output"] = chain
        return {"case_id": case.case_id, "new_answer": case.answers[0], "edits": edits, "single_hops": hops,
                "questions": multihop, "multihop_correct": any(q["correct"] for q in multihop),
                "instance_correct": bool(hops) and all(h["correct"] for h in hops)}
