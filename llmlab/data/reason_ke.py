"""Reason-KE training data: MQuAKE-CF cases with retrieved facts and four-stage reasoning chains.

Following the official code (YukinoshitaKaren/Reason-KE generate/get_mquake_reason.py):
- fact pool: every requested rewrite of the file, keyed by its *true* statement
  "{prompt.format(subject)} {target_true}" and mapped to its *new* statement "... {target_new}";
- per case, k facts are retrieved per rewrite (k = 1 w.p. 0.9, 2 w.p. 0.05, 3 w.p. 0.05), the
  query being the rewrite's new statement + ". ", and joined with ". " — the relevant edit plus
  distractors (other cases' edits);
- prompt (knowledge_edit_template): "Please acknowledge the updated information provided below
  and respond to the subsequent query.\\n\\n[Updated Information]:\\n{facts}\\n\\n[Query]:\\n{question}"
  with the case's first question.
The official chains were written by DeepSeek-R1 from a one-shot template; offline we build them
deterministically from MQuAKE's `new_single_hops` (one reasoning step per hop) in the same four
stages, ending "[Answer]:\\n{new_answer}". A file of externally written chains (the official
generated format: `tok_fact`, `questions`, `reasoning_answer`) is accepted instead.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from llmlab.capabilities import EditRequest
from llmlab.data import mquake
from llmlab.data.mquake import Case
from llmlab.errors import UserError

INSTRUCTION = ("Please acknowledge the updated information provided below and respond to the subsequent query."
               "\n\n[Updated Information]:\n")
K_CHOICES = ((1, 0.9), (2, 0.05), (3, 0.05))  # get_mquake_reason.py process_item


def reason_prompt(facts: str, question: str) -> str:
    return f"{INSTRUCTION}{facts}\n\n[Query]:\n{question}"


def new_statement(r: EditRequest) -> str:
    """The rewrite's new statement "{prompt with subject} {target_new}"."""
    return f"{r.prompt} {r.target_new}"


def true_statement(r: EditRequest) -> str:
    """The rewrite's true statement "{prompt with subject} {target_true}" (the retrieval key)."""
    return f"{r.prompt} {r.target_true}"


def load_cases(path: str | Path) -> list[Case]:
    """MQuAKE training cases (llmlab.data.mquake parses and checks them)."""
    return mquake.load_cases(path, "reason_ke: method.train_path")


class FactPool:
    """Edited facts: true statements (retrieval keys) -> new statements, embedded once."""

    def __init__(self, pairs: list[tuple[str, str]], encoder):
        self.new_of = dict(pairs)
        self.keys = list(self.new_of)
        self.encoder = encoder
        self.emb = encoder.encode(self.keys) if self.keys else None

    def retrieve(self, query: str, k: int) -> list[str]:
        """The new statements of the k keys most similar to `query` (best first)."""
        if self.emb is None or k < 1:
            return []
        import torch

        scores = self.emb @ self.encoder.encode([query])[0]
        top = torch.topk(scores, min(k, len(self.keys))).indices.tolist()
        return [self.new_of[self.keys[i]] for i in top]


def pool_of_cases(cases: list[Case], encoder) -> FactPool:
    return FactPool([(true_statement(r), new_statement(r)) for c in cases for r in c.requests], encoder)


def sample_k(rng: random.Random) -> int:
    x, acc = rng.random(), 0.0
    for k, p in K_CHOICES:
        acc += p
        if x < acc:
            return k
    return K_CHOICES[-1][0]


def retrieved_facts(pool: FactPool, new_statements: list[str], k: int) -> list[str]:
    """Facts for a case: k retrieved per rewrite (query "{new statement}. "), duplicates merged."""
    facts: list[str] = []
    for s in new_statements:
        for f in pool.retrieve(f"{s}. ", k):
            if f not in facts:
                facts.append(f)
    return facts


def build_chain(question: str, facts: list[str], relevant: set[str], hops: list[tuple[str, str]], answer: str) -> str:
    """The four-stage chain: acknowledge, relevance, apply/ignore, reasoning (one step per hop), answer."""
    ack = "; ".join(facts) if facts else "no updated information"
    rel = " ".join(f'"{f}" is relevant to the query.' if f in relevant else
                   f'"{f}" is not relevant to the query (a distractor).' for f in facts)
    apply = [f for f in facts if f in relevant]
    ignore = [f for f in facts if f not in relevant]
    step3 = (f"Apply: {'; '.join(apply)}." if apply else "No update applies.") + \
            (f" Ignore: {'; '.join(ignore)}." if ignore else "")
    steps = " ".join(f"{cloze.rstrip()} {ans}." for cloze, ans in hops)
    return (f"1.**Acknowledge Updated Information**: The updated information states: {ack}.\n"
            f"2.**Determine Relevance**: The query asks: {question} {rel}\n"
            f"3.**Apply Updated Information or Ignore**: {step3}\n"
            f"4.**Reasoning**: {steps} Therefore, the answer is {answer}.\n\n"
            f"[Answer]:\n{answer}")


def training_examples(cases: list[Case], pool: FactPool, seed: int = 0) -> list[dict]:
    """SFT examples {"prompt", "answer", "case_id", "k"} from MQuAKE cases (first question each)."""
    rng = random.Random(seed)
    out = []
    for case in cases:
        k = sample_k(rng)
        own = [new_statement(r) for r in case.requests]
        facts = retrieved_facts(pool, own, k)
        question = case.questions[0]
        hops = [(h.cloze or h.question, h.answers[0]) for h in case.single_hops]
        chain = build_chain(question, facts, set(own), hops, case.answers[0])
        out.append({"prompt": reason_prompt(". ".join(facts), question), "answer": chain,
                    "case_id": case.case_id, "k": k})
    return out


def read_chains(path: str | Path) -> list[dict]:
    """Examples from externally written chains (official generated format: tok_fact, questions,
    reasoning_answer; or plain prompt/answer records)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"reason_ke: method.chains_path={path} does not exist.")
    data = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for i, item in enumerate(data if isinstance(data, list) else []):
        if isinstance(item, dict) and "prompt" in item and "answer" in item:
            out.append({"prompt": item["prompt"], "answer": item["answer"], "case_id": item.get("case_id")})
        elif isinstance(item, dict) and "reasoning_answer" in item and "questions" in item:
            out.append({"prompt": reason_prompt(item.get("tok_fact", ""), item["questions"][0]),
                        "answer": item["reasoning_answer"], "case_id": item.get("case_id")})
        else:
            raise UserError(f"reason_ke: {path} record {i} needs reasoning_answer + questions (+ tok_fact), "
                            f"or prompt + answer.")
    if not out:
        raise UserError(f"reason_ke: {path} holds no chains (expected a JSON list).")
    return out


# eval/eval_rasoning.py extract_answer: the markers it looks for, in this order
ANSWER_MARKERS = ("[Answer]:  \n", "**[Answer]:**  \n", "**[Answer]**  \n", "**[Answer]**:  \n", "**[Answer]**:")


def extract_answer(text: str) -> str:
    """The answer as the official evaluation reads it (eval_rasoning.py `extract_answer`, then
    `.split('\\n')[0].strip()` in main): after the first marker found (two spaces then a newline
    after "[Answer]:", or a bold variant), up to a blank line followed by "*", first line; "" when no
    marker is there (so "[Answer]:\\nX" with no two spaces is no answer, as officially)."""
    for marker in ANSWER_MARKERS:
        if marker in text:
            answer = text.split(marker, 1)[1].strip()
            return answer.split("\n\n*")[0].strip().split("\n")[0].strip()
    return ""


def parse_answer(text: str) -> str:
    """A lenient reading (ours, not the paper's): what follows the last "[Answer]:" marker (markdown
    bold tolerated, any spacing), its first non-empty line."""
    marker = max(text.rfind("[Answer]:"), text.rfind("[Answer]**:"), text.rfind("[Answer]"))
    if marker < 0:
        return ""
    rest = text[marker:].split("]", 1)[1].lstrip("*:").strip()
    for line in rest.split("\n"):
        line = line.strip().strip("*").strip()
        if line:
            return line
    return ""
