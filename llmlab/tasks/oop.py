"""OOP: the object-oriented programming benchmark (and HumanEval- / MBPP-format files on the same harness) (Wang et al., Findings of ACL 2024; alphadl/OOP-eval).

431 problems that ask for classes, private/public methods, inheritance, ... A sample counts for
pass@k when the problem's tests pass, and for pass@o when, besides, the code holds the keyword
points the question asks for (`test_matching`: e.g. "class WDS" and "def without_duplicates").

As the official harness (oop_evaluate/data.py `read_problems`, execution.py `check_correctness`):
- the test program is completion + `test_function` + `def check(candidate): <test_list>` +
  `check(<entry_point>)`; the matching program is `str_content = repr(completion)` +
  `test_match_function` + `def check(candidate): <test_matching>` + `check(matching_function)`;
- each runs in a sandboxed process (llmlab.execution.sandbox) with the official 3 s timeout;
- the official harness runs both in one `try` and calls the result "passed" only when both pass: the
  "pass@k" it prints is therefore pass@o. Here `pass@k` is the tests alone and `pass_o@k` tests and
  keyword points (the number the harness prints), both with the unbiased estimator, each reported
  for the k that every problem has samples for.

The release ships no generation prompt. Ours (`prompt`): the question, then one sentence asking for
the code in a ```python block; the code is the first fenced block of the answer that holds code, or the
whole answer when it has none (a replayed completion file holds bare code). Difficulty files renumber task ids:
problems are matched to simple / moderate / difficult by their question text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from llmlab.errors import UserError
from llmlab.execution.passk import mean_pass_at_k
from llmlab.execution.sandbox import Limits, isolation, run_samples
from llmlab.generation import Sampling
from llmlab.metrics.registry import register
from llmlab.progress import progress
from llmlab.tasks.base import Task

register("pass", "pass@k: the problem's tests pass (unbiased estimator, mean over problems), x100", unit="%")
register("pass_o", "pass@o at k: the tests pass AND the code holds the question's keyword points (OOP-eval "
         "test_matching); what the official harness prints as \"pass@k\", x100", unit="%")
register("keyword_match", "samples whose code holds the question's keyword points (OOP-eval test_matching), "
         "tests aside, % of samples", unit="%")

DIFFICULTY_FILES = {"simple": "oop_data_simple.jsonl", "moderate": "oop_data_moderate.jsonl",
                    "difficult": "oop_data_difficulty.jsonl"}


@dataclass
class Problem:
    task_id: str
    question: str
    test_program: str                # appended to the code
    match_program: str | None = None  # appended to `str_content = repr(code)` (OOP-eval only)
    code_prefix: str = ""            # put before the completion (HumanEval: the prompt it completes)
    difficulty: str | None = None


def read_problems(path: Path) -> list[Problem]:
    """A problems file in one of three formats, recognised by its keys, turned into programs as each
    official harness builds them:
    - OOP-eval (task_id, question, test_list, test_function, entry_point, test_matching,
      test_match_function): oop_evaluate/data.py `read_problems`, execution.py `check_correctness`;
    - HumanEval (task_id, prompt, test, entry_point): human-eval execution.py, prompt + completion +
      test + `check(entry_point)`;
    - MBPP (task_id, text, test_list[, test_setup_code]): code + setup + the asserts.
    HumanEval and MBPP have no keyword points: only pass@k is reported for them."""
    problems = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            problems.append(_problem(json.loads(line)))
        except (ValueError, KeyError, TypeError) as err:
            raise UserError(f"oop: {path}:{n} is not a problem in a known format ({type(err).__name__}: {err}). "
                            f"OOP-eval files hold task_id, question, test_list, test_function, entry_point, "
                            f"test_matching, test_match_function; HumanEval files task_id, prompt, test, entry_point; "
                            f"MBPP files task_id, text, test_list.") from None
    return problems


def _problem(row: dict) -> Problem:
    if "test_matching" in row or "question" in row:
        tests = "\n\nMETADATA = {}\n\n\ndef check(candidate):" + "".join("\n    " + t for t in row["test_list"])
        match = "\n\nMETADATA = {}\n\n\ndef check(candidate):\n    " + row["test_matching"]
        return Problem(task_id=row["task_id"], question=row["question"],
                       test_program=row["test_function"] + "\n" + tests + "\n" + f"\ncheck({row['entry_point']})",
                       match_program=row["test_match_function"] + "\n" + match + "\n" + "\ncheck(matching_function)")
    if "prompt" in row and "test" in row:  # HumanEval
        return Problem(task_id=row["task_id"], question=row["prompt"], code_prefix=row["prompt"],
                       test_program="\n" + row["test"] + "\n" + f"check({row['entry_point']})")
    if "text" in row and "test_list" in row:  # MBPP
        asserts = "\n".join(row["test_list"])
        return Problem(task_id=row["task_id"], question=f"{row['text']}\nYour code should pass these tests:\n{asserts}",
                       test_program=(row.get("test_setup_code") or "") + "\n" + asserts)
    raise KeyError("no known set of keys")


def extract_code(answer: str) -> str:
    """The first fenced block of a model's answer that holds code, else the answer itself.

    Fences are read line by line: a fence line with a language tag met inside an open block starts a
    new block (small models write "```" then "```python"), and a block still open at the end (the
    answer cut at max_new_tokens) counts."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in answer.split("\n"):
        fence = line.strip()
        if fence.startswith("```"):
            if current is None:
                current = []
            elif fence == "```":
                blocks.append(current)
                current = None
            else:
                if any(x.strip() for x in current):
                    blocks.append(current)
                current = []
            continue
        if current is not None:
            current.append(line)
    if current:
        blocks.append(current)
    for block in blocks:
        if any(x.strip() for x in block):
            return "\n".join(block) + "\n"
    return answer


@dataclass
class OOP(Task):
    name: ClassVar[str] = "oop"
    needs_weights: ClassVar[bool] = False    # text in, text out: replayed and API completions work
    unit: ClassVar[str] = "problem"
    limit_means: ClassVar[str] = "the first N problems of the file"
    main_metric: ClassVar[str] = "pass_o@1"

    data_path: str | None = None             # alphadl/OOP-eval data/oop_data_all.jsonl (or example/oop_problem.jsonl)
    difficulty_dir: str | None = None        # the dir of the three difficulty files; null: data_path's dir if there
    n_samples: int = 1                       # samples per problem
    ks: tuple = (1,)                         # pass@k / pass@o at these k (paper: 1, 80, 100)
    temperature: float = 0.1                 # paper, pass@1: temperature 0.1, top-p 0.95
    top_p: float = 0.95
    max_new_tokens: int = 512
    prompt: str = "{question}\nWrite the complete Python code in a single ```python code block."
    chat: bool | None = None                 # null: the model spec's `chat`
    timeout: float = 3.0                     # oop_evaluate/evaluate_functional_correctness.py: timeout=3.0
    memory_mb: int = 1024
    workers: int = 2                         # sandboxed processes at once (official n_workers=4)

    def __post_init__(self):
        self.ks = tuple(int(k) for k in self.ks)
        if self.n_samples < 1 or any(k < 1 for k in self.ks) or self.workers < 1 or self.timeout <= 0:
            raise UserError(f"oop: n_samples={self.n_samples}, ks={list(self.ks)}, workers={self.workers} and "
                            f"timeout={self.timeout} must be positive.")
        if max(self.ks) > self.n_samples:
            raise UserError(f"oop: pass@k needs at least k samples per problem, but ks={list(self.ks)} and "
                            f"n_samples={self.n_samples}. Set task.n_samples >= {max(self.ks)} or lower task.ks.")

    # -- data ---------------------------------------------------------------------------------
    def check_data(self) -> None:
        if not self.data_path:
            raise UserError("oop: no problems file. Set task.data_path=<OOP-eval data/oop_data_all.jsonl> (alphadl/"
                            "OOP-eval; the three difficulty files beside it give the per-difficulty breakdown).")
        path = Path(str(self.data_path)).expanduser()
        if not path.is_file():
            raise UserError(f"oop: task.data_path={path} does not exist. Give the OOP-eval problems file "
                            f"(data/oop_data_all.jsonl, or example/oop_problem.jsonl for the official example).")
        self._problems = read_problems(path)
        if not self._problems:
            raise UserError(f"oop: {path} holds no problems.")
        self._difficulty = self._read_difficulties(path)

    def _read_difficulties(self, path: Path) -> dict[str, str]:
        directory = Path(str(self.difficulty_dir)).expanduser() if self.difficulty_dir else path.parent
        files = {d: directory / f for d, f in DIFFICULTY_FILES.items()}
        if not all(f.is_file() for f in files.values()):
            if self.difficulty_dir:
                raise UserError(f"oop: task.difficulty_dir={directory} lacks "
                                f"{', '.join(f for f in DIFFICULTY_FILES.values())}.")
            return {}
        return {p.question: level for level, f in files.items() for p in read_problems(f)}

    def items(self, lm, ctx) -> list[Problem]:
        if not hasattr(self, "_problems"):
            self.check_data()
        for p in self._problems:
            p.difficulty = self._difficulty.get(p.question)
        return list(self._problems)

    # -- generation (per problem) and execution (all samples at once, in parallel) -------------
    def run_one(self, lm, method, item: Problem, ctx) -> dict:
        sampling = Sampling(max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_p=self.top_p,
                            n=self.n_samples, seed=ctx.seed)
        prompt = self.prompt.format(question=item.question)
        if self.chat if self.chat is not None else (getattr(lm, "spec", None) or {}).get("chat", False):
            prompt = [{"role": "user", "content": prompt}]
        answers = lm.generate([prompt], sampling, keys=[item.task_id])[0]
        if len(answers) < self.n_samples:
            raise UserError(f"oop: {item.task_id} has {len(answers)} completions, task.n_samples={self.n_samples}: "
                            f"a replayed file must hold at least n_samples completions per problem.")
        return {"task_id": item.task_id, "difficulty": item.difficulty, "question": item.question,
                "answers": answers, "completions": [extract_code(a) for a in answers], "_problem": item}

    def aggregate(self, predictions: list[dict], ctx) -> dict[str, float]:
        limits = Limits(timeout=self.timeout, memory_mb=self.memory_mb)
        samples = []
        for p in predictions:
            problem = p["_problem"]
            for c in p["completions"]:
                code = problem.code_prefix + c
                samples.append([code + "\n" + problem.test_program] + (
                    [f"str_content = {c!r}\n" + problem.match_program] if problem.match_program else []))
        bar = progress(range(len(samples)), desc="oop: executing", unit="sample")
        ticks = iter(bar)
        outcomes = run_samples(samples, limits, self.workers, on_done=lambda: next(ticks, None))
        i = 0
        for p in predictions:
            p.pop("_problem")
            n = len(p["completions"])
            got = outcomes[i:i + n]
            i += n
            p["tests"] = [o.verdicts[0] for o in got]
            p["passed"] = sum(o.passed[0] for o in got)
            if len(samples[i - 1]) > 1:  # keyword points (OOP-eval)
                p["keywords"] = [o.verdicts[1] == "passed" for o in got]
                p["passed_o"] = sum(o.passed[0] and o.passed[1] for o in got)
        self._isolation = isolation()
        return self.scores(predictions)

    def scores(self, predictions: list[dict]) -> dict[str, float]:
        metrics: dict[str, float] = {}
        groups = {"": predictions}
        for level in DIFFICULTY_FILES:
            chosen = [p for p in predictions if p.get("difficulty") == level]
            if chosen:
                groups[f"{level}/"] = chosen
        for prefix, preds in groups.items():
            totals = [len(p["completions"]) for p in preds]
            for name, field in (("pass", "passed"), ("pass_o", "passed_o")):
                if all(field in p for p in preds):
                    for k, value in mean_pass_at_k(totals, [p[field] for p in preds], list(self.ks)).items():
                        metrics[f"{prefix}{name}@{k}"] = 100.0 * value
        flags = [flag for p in predictions for flag in p.get("keywords", [])]
        if flags:
            metrics["keyword_match"] = 100.0 * sum(flags) / len(flags)
        return metrics

    def info(self, items, method, ctx) -> dict:
        return {"sandbox": getattr(self, "_isolation", isolation()), "timeout_s": self.timeout,
                "samples_per_problem": self.n_samples, "prompt": self.prompt,
                "difficulty_known": sum(1 for p in items if p.difficulty)}
