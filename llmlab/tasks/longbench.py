"""LongBench (Bai et al., 2023): the 16 English subsets, as the DynamicKV paper runs them.

The loop follows the DynamicKV official `run/longbench/pred.py` (itself LongBench's `pred.py`
and KVCache-Factory's `run_longbench.py`), and scoring follows LongBench's `eval.py`/`metrics.py`:

1. prompt = dataset2prompt[subset].format(**record)                      (templates below)
2. tokens = tokenizer(prompt) with special tokens; when longer than `max_length` keep the first
   int(max_length/2) and the last int(max_length/2) tokens, decode both halves (special tokens
   skipped) and re-tokenize their concatenation                            (middle truncation)
3. chat template: off by default (`chat: false`, as DynamicKV's pred.py). `chat: true` applies the
   tokenizer's chat template after truncation, except on the few-shot/code subsets (trec, triviaqa,
   samsum, lsht, lcc, repobench-p), as LongBench's pred.py; `chat: inst` wraps every prompt as
   "[INST] {prompt} [/INST]" before truncation, as KVCache-Factory does for Llama-2.
4. greedy decoding of up to dataset2maxlen[subset] tokens inside `with method.apply(lm)` (a KV press
   compresses the cache there); samsum also stops at "\\n" and must emit one token first (pred.py).
5. score: first line only for trec/triviaqa/samsum, max over the ground truths, 100 × mean rounded
   to 2 decimals per subset (eval.py); `average` is the mean of the subsets run.

Data: `data_dir` holds LongBench jsonl files (`<subset>.jsonl`, or `data/<subset>.jsonl` as in the
release's data.zip); `source: hub` loads `THUDM/LongBench` with `datasets` instead. `ctx.limit`
takes the first N records of each subset (pred.py's `--sample_method topk`).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from llmlab.capabilities import KVCompression
from llmlab.errors import UserError
from llmlab.metrics import longbench as lbm
from llmlab.metrics.text import rouge_l_f
from llmlab.paths import hub_offline
from llmlab.tasks.base import Task

ENGLISH_SUBSETS = [
    "narrativeqa", "qasper", "multifieldqa_en", "hotpotqa", "2wikimqa", "musique",
    "gov_report", "qmsum", "multi_news", "trec", "triviaqa", "samsum",
    "passage_count", "passage_retrieval_en", "lcc", "repobench-p",
]

# LongBench config/dataset2prompt.json (same strings in DynamicKV pred.py `model2prompt`), English subsets.
_MULTIDOC_QA = (
    "Answer the question based on the given passages. Only give me the answer and do not output any other words."
    "\n\nThe following are given passages.\n{context}\n\nAnswer the question based on the given passages. "
    "Only give me the answer and do not output any other words.\n\nQuestion: {input}\nAnswer:"
)
_QASPER_INSTRUCTION = (
    "Answer the question as concisely as you can, using a single phrase or sentence if possible. If the question "
    "cannot be answered based on the information in the article, write \"unanswerable\". If the question is a "
    "yes/no question, answer \"yes\", \"no\", or \"unanswerable\". Do not provide any explanation."
)
# "asconcisely" (sic) is in the official narrativeqa template.
_NARRATIVE_INSTRUCTION = "asconcisely as you can, using a single phrase if possible. Do not provide any explanation."
DATASET2PROMPT: dict[str, str] = {
    "narrativeqa": (
        "You are given a story, which can be either a novel or a movie script, and a question. Answer the question "
        + _NARRATIVE_INSTRUCTION + "\n\nStory: {context}\n\nNow, answer the question based on the story "
        + _NARRATIVE_INSTRUCTION + "\n\nQuestion: {input}\n\nAnswer:"
    ),
    "qasper": (
        "You are given a scientific article and a question. " + _QASPER_INSTRUCTION + "\n\nArticle: {context}\n\n "
        "Answer the question based on the above article as concisely as you can, using a single phrase or sentence "
        "if possible. If the question cannot be answered based on the information in the article, write "
        "\"unanswerable\". If the question is a yes/no question, answer \"yes\", \"no\", or \"unanswerable\". Do not "
        "provide any explanation.\n\nQuestion: {input}\n\nAnswer:"
    ),
    "multifieldqa_en": (
        "Read the following text and answer briefly.\n\n{context}\n\nNow, answer the following question based on "
        "the above text, only give me the answer and do not output any other words.\n\nQuestion: {input}\nAnswer:"
    ),
    "hotpotqa": _MULTIDOC_QA,
    "2wikimqa": _MULTIDOC_QA,
    "musique": _MULTIDOC_QA,
    "gov_report": (
        "You are given a report by a government agency. Write a one-page summary of the report.\n\nReport:\n"
        "{context}\n\nNow, write a one-page summary of the report.\n\nSummary:"
    ),
    "qmsum": (
        "You are given a meeting transcript and a query containing a question or instruction. Answer the query in "
        "one or more sentences.\n\nTranscript:\n{context}\n\nNow, answer the query based on the above meeting "
        "transcript in one or more sentences.\n\nQuery: {input}\nAnswer:"
    ),
    "multi_news": (
        "You are given several news passages. Write a one-page summary of all news. \n\nNews:\n{context}\n\n"
        "Now, write a one-page summary of all the news.\n\nSummary:"
    ),
    "trec": "Please determine the type of the question below. Here are some examples of questions.\n\n{context}\n{input}",
    "triviaqa": (
        "Answer the question based on the given passage. Only give me the answer and do not output any other words. "
        "The following are some examples.\n\n{context}\n\n{input}"
    ),
    "samsum": "Summarize the dialogue into a few short sentences. The following are some examples.\n\n{context}\n\n{input}",
    "passage_count": (
        "There are some paragraphs below sourced from Wikipedia. Some of them may be duplicates. Please carefully "
        "read these paragraphs and determine how many unique paragraphs there are after removing duplicates. In "
        "other words, how many non-repeating paragraphs are there in total?\n\n{context}\n\nPlease enter the final "
        "count of unique paragraphs after removing duplicates. The output format should only contain the number, "
        "such as 1, 2, 3, and so on.\n\nThe final answer is: "
    ),
    "passage_retrieval_en": (
        "Here are 30 paragraphs from Wikipedia, along with an abstract. Please determine which paragraph the "
        "abstract is from.\n\n{context}\n\nThe following is an abstract.\n\n{input}\n\nPlease enter the number of "
        "the paragraph that the abstract is from. The answer format must be like \"Paragraph 1\", \"Paragraph 2\", "
        "etc.\n\nThe answer is: "
    ),
    "lcc": "Please complete the code given below. \n{context}Next line of code:\n",
    "repobench-p": "Please complete the code given below. \n{context}{input}Next line of code:\n",
}

# LongBench config/dataset2maxlen.json (= DynamicKV pred.py), English subsets: max new tokens.
DATASET2MAXLEN: dict[str, int] = {
    "narrativeqa": 128, "qasper": 128, "multifieldqa_en": 64, "hotpotqa": 32, "2wikimqa": 32, "musique": 32,
    "gov_report": 512, "qmsum": 512, "multi_news": 512, "trec": 64, "triviaqa": 32, "samsum": 128,
    "passage_count": 32, "passage_retrieval_en": 32, "lcc": 64, "repobench-p": 64,
}

# LongBench pred.py: "chat models are better off without build prompts on these tasks"
NO_CHAT_SUBSETS = ("trec", "triviaqa", "samsum", "lsht", "lcc", "repobench-p")

RECORD_KEYS = ("input", "context", "answers", "length", "dataset", "language", "all_classes", "_id")


# ---------------------------------------------------------------------------------------------
# data


def check_record(record: Any, where: str) -> dict:
    """Validate one LongBench record; `where` names its file and line (or hub row) for the error."""
    if not isinstance(record, dict):
        raise UserError(f"{where}: a LongBench record must be a JSON object with keys {', '.join(RECORD_KEYS)}; "
                        f"got {type(record).__name__}.")
    missing = [k for k in RECORD_KEYS if k not in record]
    if missing:
        raise UserError(f"{where}: LongBench record lacks key(s) {', '.join(repr(k) for k in missing)}. Each line of a "
                        f"LongBench jsonl file is an object with keys {', '.join(RECORD_KEYS)} (THUDM/LongBench format).")
    for key in ("input", "context", "_id"):
        if not isinstance(record[key], str):
            raise UserError(f"{where}: key {key!r} must be a string, got {type(record[key]).__name__}.")
    answers = record["answers"]
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
        raise UserError(f"{where}: key 'answers' must be a non-empty list of strings, got {answers!r:.80}.")
    classes = record["all_classes"]
    if classes is not None and not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
        raise UserError(f"{where}: key 'all_classes' must be null or a list of strings, got {classes!r:.80}.")
    return record


def read_jsonl(path: str | Path, limit: int | None = None) -> list[dict]:
    """The first `limit` records of a LongBench jsonl file, each validated (errors name file, line, key)."""
    path = Path(path)
    records: list[dict] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if limit is not None and len(records) >= limit:
                break
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise UserError(f"{path}:{lineno}: not valid JSON ({err.msg} at column {err.colno}); a LongBench "
                                f"jsonl file has one JSON object per line.") from None
            records.append(check_record(record, f"{path}:{lineno}"))
    return records


def find_subset_file(data_dir: str | Path, subset: str) -> Path:
    """`<data_dir>/<subset>.jsonl`, or `<data_dir>/data/<subset>.jsonl` (the layout of LongBench's data.zip)."""
    data_dir = Path(data_dir).expanduser()
    tried = [data_dir / f"{subset}.jsonl", data_dir / "data" / f"{subset}.jsonl"]
    for path in tried:
        if path.is_file():
            return path
    raise UserError(f"LongBench subset {subset!r}: no file at {tried[0]} (nor {tried[1]}). Set task.data_dir=<dir of "
                    f"LongBench jsonl files> (LongBench's data.zip from huggingface.co/datasets/THUDM/LongBench, "
                    f"unzipped), choose other subsets with task.subsets=[...], or load from the hub with task.source=hub.")


def load_hub(hub_id: str, subset: str, limit: int | None = None) -> list[dict]:
    """Records of one subset from the hub (`datasets.load_dataset(hub_id, subset, split="test")`)."""
    offline = hub_offline()
    if offline:
        raise UserError(f"task.source=hub needs the Hugging Face hub, but {' and '.join(offline)}=1 (llmlab runs offline "
                        f"by default). Allow downloads with `HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0 llmlab run ...`, or "
                        f"use local files: task.source=local task.data_dir=<dir of LongBench jsonl files>.")
    import datasets

    try:
        data = datasets.load_dataset(hub_id, subset, split="test")
    except Exception as err:  # network, unknown config, ...
        raise UserError(f"could not load LongBench subset {subset!r} from the hub dataset {hub_id!r} "
                        f"({type(err).__name__}: {err}). Use local files instead: task.source=local "
                        f"task.data_dir=<dir of LongBench jsonl files>.") from err
    n = len(data) if limit is None else min(limit, len(data))
    return [check_record(dict(data[i]), f"{hub_id}[{subset}] row {i}") for i in range(n)]


# ---------------------------------------------------------------------------------------------
# prompts


def truncate_middle(ids: list[int], max_length: int) -> tuple[list[int], list[int]]:
    """LongBench pred.py: when longer than max_length, the first and last int(max_length/2) tokens.

    Returns (head, tail); tail is empty when nothing is cut.
    """
    if max_length < 2:
        raise UserError(f"LongBench max_length must be at least 2 tokens, got {max_length}.")
    if len(ids) <= max_length:
        return list(ids), []
    half = int(max_length / 2)
    return list(ids[:half]), list(ids[-half:])


def build_input_ids(lm, prompt: str, subset: str, max_length: int, chat: bool | str = False) -> tuple[list[int], bool]:
    """Token ids fed to the model for one prompt, and whether the middle was cut (see module doc)."""
    tok = lm.tokenizer
    if chat == "inst":  # KVCache-Factory (Llama-2): wrap before tokenizing and truncating
        prompt = f"[INST] {prompt} [/INST]"
    ids = tok(prompt, add_special_tokens=True)["input_ids"]
    head, tail = truncate_middle(ids, max_length)
    truncated = bool(tail)
    if truncated:
        prompt = tok.decode(head, skip_special_tokens=True) + tok.decode(tail, skip_special_tokens=True)
    if chat is True and subset not in NO_CHAT_SUBSETS:
        return list(lm.encode(prompt, chat=True)), truncated
    if truncated:
        ids = tok(prompt, add_special_tokens=True)["input_ids"]
    return list(ids), truncated


def _chat_mode(value) -> bool | str:
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("true", "false"):
            return low == "true"
        if low == "inst":
            return "inst"
    elif isinstance(value, bool):
        return value
    raise UserError(f"task.chat must be false (plain prompts, as the DynamicKV code), true (the tokenizer's chat "
                    f"template, as LongBench's pred.py) or inst ([INST] ... [/INST], as KVCache-Factory for Llama-2); "
                    f"got {value!r}.")


# ---------------------------------------------------------------------------------------------
# the task


@dataclass
class LongBench(Task):
    name: ClassVar[str] = "longbench"
    honours: ClassVar[tuple] = (KVCompression,)
    limit_means: ClassVar[str] = "the first N examples of each subset"
    main_metric: ClassVar[str] = "average"

    subsets: list[str] = field(default_factory=lambda: list(ENGLISH_SUBSETS))
    source: str = "local"  # local (data_dir) | hub (THUDM/LongBench via `datasets`)
    data_dir: str | None = None  # directory of LongBench jsonl files, one per subset
    hub_id: str = "THUDM/LongBench"
    config_dir: str | None = None  # optional dir with LongBench's dataset2prompt.json / dataset2maxlen.json
    chat: Any = False  # false | true | inst (see module doc)
    max_length: int | None = None  # prompt tokens kept by middle truncation; null: the model's max_length
    max_new_tokens: int | None = None  # null: LongBench's dataset2maxlen per subset

    def __post_init__(self):
        if isinstance(self.subsets, str):
            self.subsets = [self.subsets]
        self.subsets = list(self.subsets)
        unknown = [s for s in self.subsets if s not in ENGLISH_SUBSETS]
        if unknown or not self.subsets:
            raise UserError(f"unknown LongBench subset(s) {unknown or '(none given)'}; task.subsets takes any of the "
                            f"16 English subsets: {', '.join(ENGLISH_SUBSETS)}.")
        if self.source not in ("local", "hub"):
            raise UserError(f"task.source must be local (task.data_dir=<dir of LongBench jsonl>) or hub "
                            f"({self.hub_id} via `datasets`); got {self.source!r}.")
        self.chat = _chat_mode(self.chat)
        self.prompts, self.maxlens = self._templates()

    def _templates(self) -> tuple[dict[str, str], dict[str, int]]:
        prompts, maxlens = dict(DATASET2PROMPT), dict(DATASET2MAXLEN)
        if self.config_dir:
            for name, table in (("dataset2prompt.json", prompts), ("dataset2maxlen.json", maxlens)):
                path = Path(self.config_dir).expanduser() / name
                try:
                    loaded = json.loads(path.read_text(encoding="utf-8"))
                except (OSError, json.JSONDecodeError) as err:
                    raise UserError(f"task.config_dir: could not read {path} ({err}); it should hold LongBench's "
                                    f"config/{name}. Leave task.config_dir=null to use the built-in copies.") from None
                table.update({k: v for k, v in loaded.items() if k in ENGLISH_SUBSETS})
        return prompts, maxlens

    # -- data
    def load(self, subset: str, limit: int | None = None) -> list[dict]:
        if self.source == "hub":
            return load_hub(self.hub_id, subset, limit)
        if not self.data_dir:
            raise UserError("task longbench needs its data: set task.data_dir=<dir of LongBench jsonl files> (one "
                            "<subset>.jsonl per subset, as in LongBench's data.zip from "
                            "huggingface.co/datasets/THUDM/LongBench), or task.source=hub to load THUDM/LongBench "
                            "with `datasets` (needs HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0).")
        records = read_jsonl(find_subset_file(self.data_dir, subset), limit)
        if not records:
            raise UserError(f"LongBench subset {subset!r}: {find_subset_file(self.data_dir, subset)} has no records.")
        return records

    def prompt(self, subset: str, record: dict) -> str:
        return self.prompts[subset].format(**record)

    # -- the loop (llmlab.tasks.base.Task.evaluate) --------------------------------------------
    def check_data(self) -> None:
        if self.source == "local":
            if not self.data_dir:
                self.load(self.subsets[0])  # raises the message that says how to give the data
            for subset in self.subsets:
                find_subset_file(self.data_dir, subset)

    def items(self, lm, ctx) -> list[tuple[str, dict]]:
        """(subset, record) for the first `limit` records of every subset."""
        self._max_length = int(self.max_length or lm.max_length)
        nl = lm.tokenizer.encode("\n", add_special_tokens=False)
        self._newline = nl[-1] if nl else None
        self._examples = {s: self.load(s, ctx.limit) for s in self.subsets}
        return [(s, r) for s, records in self._examples.items() for r in records]

    def limited(self, items: list, limit: int | None) -> list:
        return items  # `items` already read the first `limit` records of each subset

    def run_one(self, lm, method, item, ctx) -> dict:
        from llmlab.generation import greedy_generate

        subset, record = item
        max_new = int(self.max_new_tokens or self.maxlens[subset])
        # pred.py: samsum also stops at "\n" and must produce at least one token
        stop_ids = {self._newline} if subset == "samsum" and self._newline is not None else None
        min_new = 1 if subset == "samsum" else 0
        with ctx.timer(f"generate/{subset}"):
            ids, truncated = build_input_ids(lm, self.prompt(subset, record), subset, self._max_length, self.chat)
            with method.apply(lm):  # a KV press compresses the cache at the end of prefill
                out = greedy_generate(lm, ids, max_new, stop_ids=stop_ids, min_new_tokens=min_new,
                                      progress_desc=f"{subset} {record['_id']}" if max_new >= 128 else None)[0]
        text = lm.decode(out)
        pred = {"subset": subset, "_id": record["_id"], "prediction": text, "answers": record["answers"],
                "score": lbm.score_example(subset, text, record["answers"], record["all_classes"]),
                "prompt_tokens": len(ids), "new_tokens": len(out), "length": record.get("length"),
                "truncated": truncated}
        if lbm.SUBSET_METRIC[subset][0] == "rouge_l":
            pred["rouge_l_f"] = max(rouge_l_f(lbm.postprocess(subset, text), a) for a in record["answers"])
        return pred

    def aggregate(self, predictions: list[dict], ctx) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for subset in self.subsets:
            rows = [p for p in predictions if p["subset"] == subset]
            metrics[subset] = lbm.score_subset([p["score"] for p in rows])
            plain = [p["rouge_l_f"] for p in rows if "rouge_l_f" in p]
            if plain:
                metrics[f"{subset}/rouge_l_f"] = round(100 * statistics.fmean(plain), 2)
        metrics["average"] = round(statistics.fmean(metrics[s] for s in self.subsets), 2)
        return metrics

    def info(self, items, method, ctx) -> dict:
        return {
            "metric_per_subset": {s: f"{lbm.SUBSET_METRIC[s][0]} (LongBench metrics.py, x100)" for s in self.subsets},
            "average": "mean of the subset scores run",
            "max_length": self._max_length,
            "truncation": "middle (first and last int(max_length/2) tokens, LongBench pred.py)",
            "chat": self.chat,
            "examples": {s: len(v) for s, v in self._examples.items()},
            "source": self.hub_id if self.source == "hub" else str(self.data_dir),
            "templates": str(self.config_dir) if self.config_dir else "built-in (LongBench config/)",
        }
