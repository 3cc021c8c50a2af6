"""MQuAKE cases (Zhong et al. 2023, princeton-nlp/MQuAKE), parsed and checked once for every user:
the `mquake` task (evaluation) and Reason-KE's training data (llmlab.data.reason_ke).

A file is a JSON list of cases with `requested_rewrite[{prompt ("{}" marks the subject), subject,
target_new{str}, target_true{str}, question}]`, `questions` (3 multi-hop questions), `new_answer`,
`new_answer_alias`, `new_single_hops[{question, cloze, answer, answer_alias}]` (and `single_hops`,
`orig`). Errors name the record and key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmlab.capabilities import EditRequest
from llmlab.errors import UserError

CASE_KEYS = ("requested_rewrite", "questions", "new_answer", "new_single_hops")
REWRITE_KEYS = ("prompt", "subject", "target_new", "target_true")


@dataclass
class Hop:
    """A new single-hop fact of the case: its question, cloze statement (when given) and answers."""

    question: str
    cloze: str | None
    answers: list[str]  # answer + answer_alias


@dataclass
class Case:
    case_id: Any
    requests: list[EditRequest]
    questions: list[str]
    answers: list[str]  # new_answer + new_answer_alias
    single_hops: list[Hop]  # new_single_hops


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
        cloze = hop.get("cloze")
        hops.append(Hop(_str(hop["question"], at, "question"), cloze if isinstance(cloze, str) else None,
                        [_str(hop["answer"], at, "answer")] + [a for a in hop.get("answer_alias") or [] if isinstance(a, str)]))
    return Case(case_id=raw.get("case_id", i), requests=requests, questions=list(questions),
                answers=[_str(raw["new_answer"], where, "new_answer")] + [a for a in aliases if isinstance(a, str)],
                single_hops=hops)




def parse_cases(data, where: str = "mquake") -> list[Case]:
    """Cases of a parsed MQuAKE JSON file (a list)."""
    if not isinstance(data, list):
        raise UserError(f"{where}: expected a JSON list of MQuAKE cases, got {type(data).__name__}.")
    return [parse_case(raw, i) for i, raw in enumerate(data)]


def load_cases(path: str | Path, who: str = "mquake") -> list[Case]:
    """Cases of an MQuAKE JSON file."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"{who}: the MQuAKE file {path} does not exist. Give the original file (princeton-nlp/MQuAKE "
                        f"datasets/, e.g. MQuAKE-CF.json).")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserError(f"{who}: {path} is not valid JSON ({err}); expected an MQuAKE file.") from None
    return parse_cases(data, f"{who}: {path}")
