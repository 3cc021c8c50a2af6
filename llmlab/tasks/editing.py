"""Shared loop and scoring of the knowledge-editing tasks (zsRE family: zsre, bizsre, mzsre).

One case = a block per language with `subject, src, rephrase, alt, loc, loc_ans` and an optional
`portability {"New Question", "New Answer"}` (EasyEdit / X-KDE format). For every edit language
e and test language t (a "direction" e_t): the edit writes `src_e -> alt_e` (subject `subject_e`)
and the edited model is probed in language t:

  reliability  src_t      -> alt_t
  generality   rephrase_t -> alt_t
  portability  New Question_t -> New Answer_t
  locality     loc_t      -> loc_ans_t: the model's answer must not change

Each probe is scored by the metrics in `metrics`:
  token_acc    teacher-forced argmax accuracy over the target tokens of `prompt + " " + target`
               (EasyEdit test_prediction_acc, X-KDE icl_lm_eval); for locality, the fraction of
               those argmax tokens that agree before and after the edit (EasyEdit locality).
  exact_match, token_f1
               on the greedy generation (first line, at most `max_new_tokens`) against the target
               (Bi-ZsRE's evaluation, SQuAD normalization; CJK/Thai scored per character); for
               locality, the generation after the edit against the one before it.

Metric names: `{e}_{t}/{probe}/{metric}` per direction and `{probe}/{metric}` averaged over the
directions. The edit is undone after each case (single edits, as EasyEdit's zsRE runs).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from llmlab.capabilities import EditRequest, Editing
from llmlab.errors import UserError
from llmlab.metrics.editing import exact_match_ml, nanmean, token_accuracy, token_agreement, token_f1_ml
from llmlab.metrics.registry import register
from llmlab.models.probes import argmax_on_targets, generate_answers
from llmlab.tasks.base import Task

METRICS = ("token_acc", "exact_match", "token_f1")
PROBES = ("reliability", "generality", "locality", "portability")
BLOCK_KEYS = ("subject", "src", "rephrase", "alt", "loc", "loc_ans")

METRIC_INFO = {
    "token_acc": "teacher-forced argmax accuracy over the target tokens of prompt+' '+target "
                 "(EasyEdit/X-KDE); locality: argmax-token agreement before vs after the edit",
    "exact_match": "greedy generation (first line) vs target, normalized exact match (Bi-ZsRE); "
                   "locality: generation after vs before the edit",
    "token_f1": "greedy generation (first line) vs target, bag-of-tokens F1, CJK/Thai per character (Bi-ZsRE); "
                "locality: generation after vs before the edit",
}
for _name, _text in METRIC_INFO.items():
    register(_name, _text, unit="0-1")


def editor_of(method) -> Editing | None:
    """The method as an editor, or None for the unedited reference (`none`); `Task.check` has
    already refused anything else before the model loaded."""
    return method if isinstance(method, Editing) else None


def prompt_under(editor, lm, query: str, requests: list[EditRequest], lang: str | None = None) -> str:
    """The prompt under the edits: the editor's `prompt_for` (IKE, X-KDE), else the query itself.
    `lang` is the language the query is asked in, when the task knows it."""
    return query if editor is None else editor.prompt_for(lm, query, requests, lang=lang)


# -- data -----------------------------------------------------------------------------------------
def read_json_data(task: str, data_path: str | None, hub_id: str | None, hub_file: str | None,
                   default_file: str | None = None) -> Any:
    """Parsed JSON from `data_path` (a file, or a directory holding `hub_file`/`default_file`) or,
    only when asked, from the `hub_id` dataset repository's `hub_file`."""
    filename = hub_file or default_file
    if data_path:
        path = Path(str(data_path)).expanduser()
        if path.is_dir():
            if not filename:
                raise UserError(f"{task}: task.data_path={path} is a directory; point it at the JSON file itself.")
            path = path / filename
        if not path.exists():
            raise UserError(f"{task}: the data file {path} does not exist. Set task.data_path=/path/to/"
                            f"{filename or 'file.json'} (the original file, unmodified).")
    elif hub_id:
        try:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(repo_id=hub_id, filename=filename, repo_type="dataset"))
        except Exception as err:  # offline, missing repo or file
            raise UserError(
                f"{task}: could not fetch {filename!r} from the hub dataset {hub_id!r} ({type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else ''}). The hub may be offline here; download the file "
                f"and set task.data_path=/path/to/{filename}."
            ) from err
    else:
        raise UserError(f"{task}: no data given. Set task.data_path=/path/to/{filename or 'file.json'} "
                        f"(the benchmark's original JSON file), or task.hub_id=<dataset repo> to fetch it from the hub.")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise UserError(f"{task}: {path} is not valid JSON ({err}); expected the benchmark's original JSON file.") from err


@dataclass
class Block:
    """One language's view of a zsRE-style case."""

    subject: str
    src: str
    rephrase: str
    alt: str
    loc: str
    loc_ans: str
    portability: list[tuple[str, str]] = field(default_factory=list)


def _text(value, task: str, where: str, key: str) -> str:
    if isinstance(value, list) and value and isinstance(value[0], str):
        value = value[0]  # some zsRE dumps keep answers as lists
    if not isinstance(value, str):
        raise UserError(f"{task}: {where}: key {key!r} should be a string, got {type(value).__name__} ({value!r:.80}).")
    return value


def parse_block(raw, task: str, where: str) -> Block:
    """A language block of the EasyEdit/X-KDE zsRE format; clear errors name the record and key."""
    if not isinstance(raw, dict):
        raise UserError(f"{task}: {where} should be an object with keys {', '.join(BLOCK_KEYS)}; "
                        f"got {type(raw).__name__}.")
    missing = [k for k in BLOCK_KEYS if k not in raw]
    if missing:
        raise UserError(f"{task}: {where} lacks key(s) {', '.join(map(repr, missing))} (it has "
                        f"{', '.join(map(repr, raw))}); every case needs {', '.join(BLOCK_KEYS)} "
                        f"and may have portability.")
    values = {k: _text(raw[k], task, where, k) for k in BLOCK_KEYS}
    port = raw.get("portability")
    items = [] if port in (None, {}, []) else (port if isinstance(port, list) else [port])
    pairs = []
    for j, item in enumerate(items):
        if not isinstance(item, dict) or "New Question" not in item or "New Answer" not in item:
            raise UserError(f"{task}: {where}: portability[{j}] should be an object with 'New Question' and "
                            f"'New Answer'; got {item!r:.120}.")
        pairs.append((_text(item["New Question"], task, where, "portability.New Question"),
                      _text(item["New Answer"], task, where, "portability.New Answer")))
    return Block(portability=pairs, **values)


def request_from(block: Block, case_id: int, lang: str) -> EditRequest:
    return EditRequest(prompt=block.src, subject=block.subject, target_new=block.alt,
                       extra={"case_id": case_id, "lang": lang, "rephrase": block.rephrase,
                              "loc": block.loc, "loc_ans": block.loc_ans})


def as_list(value) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


# -- the shared task ------------------------------------------------------------------------------
@dataclass
class ZsreStyleTask(Task):
    """Edit in each `edit_lang`, test in each `test_lang`, one edit at a time, restored after each case."""

    name: ClassVar[str] = "zsre-style"
    requires: ClassVar[type] = Editing
    unit: ClassVar[str] = "case"
    limit_means: ClassVar[str] = "the first N cases (each edited in every edit language)"
    default_file: ClassVar[str | None] = None

    data_path: str | None = None
    hub_id: str | None = None
    hub_file: str | None = None
    edit_lang: Any = "en"
    test_lang: Any = "en"
    metrics: list[str] = field(default_factory=lambda: list(METRICS))
    chat: bool = False  # wrap prompts in the model's chat template (X-KDE does for chat models; EasyEdit does not)
    max_new_tokens: int = 32  # generation budget for exact_match / token_f1
    demo_pool: bool = True  # offer the other cases to the editor as IKE's demonstration pool

    def __post_init__(self):
        self.metrics = as_list(self.metrics)
        bad = [m for m in self.metrics if m not in METRICS]
        if bad or not self.metrics:
            raise UserError(f"{self.name}: task.metrics must be a non-empty subset of {list(METRICS)}; got {self.metrics}.")

    # subclasses: the cases, each {lang: Block}
    def load_cases(self) -> list[dict[str, Block]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def check_data(self) -> None:
        self._cases = self.load_cases()  # reads and checks the file before the model loads
        self._directions = self.directions(self._cases)

    def directions(self, cases) -> list[tuple[str, str]]:
        edit_langs, test_langs = as_list(self.edit_lang), as_list(self.test_lang)
        have = set(cases[0]) if cases else set()
        for lang in edit_langs + test_langs:
            if lang not in have:
                raise UserError(f"{self.name}: language {lang!r} is not in the data (its cases have "
                                f"{', '.join(sorted(have))}); set task.edit_lang / task.test_lang to those.")
        return [(e, t) for e in edit_langs for t in test_langs]

    # -- the loop (llmlab.tasks.base.Task.evaluate) --------------------------------------------
    def items(self, lm, ctx) -> list[tuple[str, int, dict]]:
        if not hasattr(self, "_cases"):
            self.check_data()
        self._offered = None
        return [(e, i, case) for e in dict.fromkeys(e for e, _ in self._directions) for i, case in enumerate(self._cases)]

    def limited(self, items: list, limit: int | None) -> list:
        return [it for it in items if not limit or it[1] < int(limit)]

    def run_one(self, lm, method, item, ctx) -> list[dict]:
        edit_lang, i, case = item
        editor = editor_of(method)
        if editor is not None and self.demo_pool and self._offered != edit_lang:
            with ctx.timer("demonstrations"):
                editor.prepare_demonstrations(lm, [request_from(c[edit_lang], j, edit_lang)
                                                   for j, c in enumerate(self._cases)])
            self._offered = edit_lang
        request = request_from(case[edit_lang], i, edit_lang)
        blocks = {t: case[t] for e, t in self._directions if e == edit_lang}
        if editor is None:
            records = self.probe(lm, None, [request], blocks, {})
        else:
            before = self.locality_before(lm, blocks)
            with editor.edit(lm, [request]) as edited:
                records = self.probe(edited, editor, [request], blocks, before)
        return [{"case": i, "edit_lang": edit_lang, "test_lang": t,
                 "edit": {"prompt": request.prompt, "target_new": request.target_new}, **record}
                for t, record in records.items()]

    def aggregate(self, predictions: list[dict], ctx) -> dict[str, float]:
        values: dict[str, list[float]] = defaultdict(list)
        for pred in predictions:
            key = f"{pred['edit_lang']}_{pred['test_lang']}"
            for probe in PROBES:
                for metric in self.metrics:
                    if metric in pred.get(probe, {}):
                        values[f"{key}/{probe}/{metric}"].append(pred[probe][metric])
        metrics = {name: nanmean(v) for name, v in values.items()}
        for probe in PROBES:
            for metric in self.metrics:
                per_direction = [metrics.get(f"{e}_{t}/{probe}/{metric}") for e, t in self._directions]
                per_direction = [v for v in per_direction if v is not None and not math.isnan(v)]
                if per_direction:
                    metrics[f"{probe}/{metric}"] = sum(per_direction) / len(per_direction)
        return metrics

    def info(self, items, method, ctx) -> dict:
        return {"directions": [f"{e}_{t}" for e, t in self._directions], "cases": len({i for _, i, _ in items}),
                "chat": self.chat, "metrics": {m: METRIC_INFO[m] for m in self.metrics}}

    @property
    def main_metric(self) -> str:
        return f"reliability/{self.metrics[0]}"

    # -- per case ---------------------------------------------------------------------------------
    # Every probe of a case, in every test language, is scored in one batch (one teacher-forced
    # pass and one batched greedy decode): the same numbers as one by one, several times faster.
    def model_outputs(self, lm, pairs: list[tuple[str, str]]) -> list[dict]:
        """Per (prompt, target): the argmax tokens and gold ids (token_acc) and/or the generation."""
        out: list[dict] = [{} for _ in pairs]
        if "token_acc" in self.metrics:
            for o, (tokens, gold) in zip(out, argmax_on_targets(lm, pairs, self.chat)):
                o["tokens"], o["gold"] = tokens, gold
        if {"exact_match", "token_f1"} & set(self.metrics):
            answers = generate_answers(lm, [p for p, _ in pairs], self.chat, self.max_new_tokens)
            for o, answer in zip(out, answers):
                o["generation"] = answer
        return out

    def locality_before(self, lm, blocks: dict[str, Block]) -> dict[str, dict]:
        """The unedited model's answers to each test language's locality prompt."""
        outputs = self.model_outputs(lm, [(b.loc, b.loc_ans) for b in blocks.values()])
        return dict(zip(blocks, outputs))

    def probe(self, lm, editor, requests, blocks: dict[str, Block], before: dict[str, dict]) -> dict[str, dict]:
        """{test language: {probe: scores}} for the model under the edits."""
        items = []  # (lang, probe, query, target)
        for lang, b in blocks.items():
            items += [(lang, "reliability", b.src, b.alt), (lang, "generality", b.rephrase, b.alt)]
            items += [(lang, "portability", q, a) for q, a in b.portability]
            if editor is not None:  # unedited: the locality answer cannot have changed
                items.append((lang, "locality", b.loc, b.loc_ans))
        prompts = [prompt_under(editor, lm, query, requests, lang=lang) for lang, _, query, _ in items]
        outputs = self.model_outputs(lm, [(p, it[3]) for p, it in zip(prompts, items)])
        records: dict[str, dict] = {lang: {} for lang in blocks}
        ported: dict[str, list[dict]] = defaultdict(list)
        for (lang, probe, query, target), output in zip(items, outputs):
            if probe == "locality":
                records[lang][probe] = self.locality_scores(lm, query, target, before[lang], output)
            elif probe == "portability":
                ported[lang].append(self.target_scores(lm, query, target, output))
            else:
                records[lang][probe] = self.target_scores(lm, query, target, output)
        for lang, record in records.items():
            if editor is None:
                record["locality"] = {"query": blocks[lang].loc, "target": blocks[lang].loc_ans,
                                      **{metric: 1.0 for metric in self.metrics}}
            if ported[lang]:
                record["portability"] = {**{m: nanmean([it[m] for it in ported[lang]]) for m in self.metrics},
                                         "items": ported[lang]}
            order = [p for p in PROBES if p in record]  # reliability, generality, locality, portability
            records[lang] = {p: record[p] for p in order}
        return records

    def target_scores(self, lm, query: str, target: str, output: dict) -> dict:
        out: dict = {"query": query, "target": target}
        if "tokens" in output:
            out["token_acc"] = token_accuracy(output["tokens"], output["gold"])
            out["argmax"] = lm.decode(output["tokens"])
        if "generation" in output:
            out["generation"] = output["generation"]
            out["exact_match"] = exact_match_ml(output["generation"], target)
            out["token_f1"] = token_f1_ml(output["generation"], target)
        return out

    def locality_scores(self, lm, query: str, target: str, before: dict, after: dict) -> dict:
        out: dict = {"query": query, "target": target}
        if "tokens" in after:
            n = min(len(after["tokens"]), len(before["tokens"]))  # one target, tokenized after different prompts
            out["token_acc"] = token_agreement(before["tokens"][:n], after["tokens"][:n])
            out["argmax_before"], out["argmax_after"] = lm.decode(before["tokens"]), lm.decode(after["tokens"])
        if "generation" in after:
            out["generation_before"], out["generation"] = before["generation"], after["generation"]
            out["exact_match"] = exact_match_ml(after["generation"], before["generation"])
            out["token_f1"] = token_f1_ml(after["generation"], before["generation"])
        return out


def parse_zsre_cases(data, task: str, languages: list[str] | None = None) -> list[dict[str, Block]]:
    """Cross-lingual cases `[{lang: block, ...}, ...]` (Bi-ZsRE, MzsRE); `languages` must all be present."""
    if not isinstance(data, list):
        raise UserError(f"{task}: expected a JSON list of cases, got {type(data).__name__}.")
    cases = []
    for i, raw in enumerate(data):
        if not isinstance(raw, dict) or not raw:
            raise UserError(f"{task}: record {i} should be an object with one block per language "
                            f"(e.g. {{'en': {{...}}, 'zh': {{...}}}}); got {raw!r:.120}.")
        for lang in languages or []:
            if lang not in raw:
                raise UserError(f"{task}: record {i} has no {lang!r} block (it has {', '.join(map(repr, raw))}).")
        cases.append({lang: parse_block(block, task, f"record {i} ({lang!r})") for lang, block in raw.items()})
    return cases
