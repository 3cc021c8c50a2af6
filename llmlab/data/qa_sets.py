"""ANLI, BoolQ, CommonsenseQA, RACE and WinoGrande: read from their public releases or the hub, and rendered as
the calibration-data paper renders them (Bandari et al., EMNLP 2024; abx393/llm-pruning-calibration-data
lib/data.py `get_anli`, `get_boolq`, `get_commonsense_qa`, `get_race`, `get_winogrande`, `prepare_input`).

`examples(name, path, split)` returns rows {prompt, answer} (ANLI also `cot`, the annotator's reason then
"So the answer is X."), the prompt ending in "Answer: " / "Label: " as the release writes it (its evaluator
`.strip()`s the whole few-shot prompt, so the trailing space never reaches the model there).

Local copies, in each release's own layout (`path` is the release directory, or one file of it):
  anli            anli_v1.0: R1/train.jsonl, R1/dev.jsonl, R1/test.jsonl (context, hypothesis, label e/n/c, reason)
  boolq           train.jsonl, dev.jsonl (question, passage, answer true/false)
  commonsense_qa  train_rand_split.jsonl, dev_rand_split.jsonl (question {stem, choices [{label, text}]}, answerKey)
  race            RACE/{train,dev,test}/{high,middle}/<n>.txt, each one article as JSON (article, questions,
                  options, answers)
  winogrande      winogrande_1.1: train_m.jsonl (the release calibrates on winogrande_m), dev.jsonl (sentence,
                  option1, option2, answer "1"/"2")
A .jsonl with the hub's field names (a `datasets` export) is read as well. With no path: the hub, at the
release's dataset and split (`HUB`).

Splits: "train" (calibration) and "test", which is what the release evaluates on: ANLI test_r<k>, RACE test,
and the dev/validation split of BoolQ, CommonsenseQA and WinoGrande (their test labels are hidden).
"""

from __future__ import annotations

import json
from pathlib import Path

from llmlab.errors import UserError
from llmlab.paths import hub_offline

NAMES = ("anli_r1", "anli_r2", "anli_r3", "boolq", "commonsense_qa", "race", "winogrande")
NLI = ["entailment", "neutral", "contradiction"]
_ANLI_LETTER = {"e": 0, "n": 1, "c": 2}

# the release's hub datasets and splits (lib/data.py); ANLI at the revision the release pins
HUB = {
    "anli": ("anli", None, {"train": "train_r{r}", "test": "test_r{r}"}),
    "boolq": ("boolq", None, {"train": "train", "test": "validation"}),
    "commonsense_qa": ("commonsense_qa", None, {"train": "train", "test": "validation"}),
    "race": ("race", "all", {"train": "train", "test": "test"}),
    "winogrande": ("winogrande", "winogrande_m", {"train": "train", "test": "validation"}),
}
ANLI_REVISION = "bf206833154d4fcaf5e3b01b8bf17d4d15213cb1"  # get_anli version_commit_sha
# the release files of each split, relative to the release directory
LOCAL = {
    "anli": {"train": "R{r}/train.jsonl", "test": "R{r}/test.jsonl"},
    "boolq": {"train": "train.jsonl", "test": "dev.jsonl"},
    "commonsense_qa": {"train": "train_rand_split.jsonl", "test": "dev_rand_split.jsonl"},
    "race": {"train": "train", "test": "test"},
    "winogrande": {"train": "train_m.jsonl", "test": "dev.jsonl"},
}
HOME = {"anli": "the ANLI release anli_v1.0 (github.com/facebookresearch/anli)",
        "boolq": "BoolQ's dev.jsonl / train.jsonl (github.com/google-research-datasets/boolean-questions)",
        "commonsense_qa": "CommonsenseQA's dev_rand_split.jsonl / train_rand_split.jsonl (tau-nlp.org/commonsenseqa)",
        "race": "the RACE release directory with train/dev/test/{high,middle} (cs.cmu.edu/~glai1/data/race)",
        "winogrande": "winogrande_1.1 with dev.jsonl / train_m.jsonl (github.com/allenai/winogrande)"}


def family(name: str) -> tuple[str, int | None]:
    """("anli", round) for anli_r<k>, (name, None) otherwise."""
    if name.startswith("anli"):
        r = name[len("anli_r"):] if name.startswith("anli_r") else "1"
        return "anli", int(r)
    return name, None


def local_file(name: str, path: str | Path, split: str) -> Path:
    """The file (RACE: the directory) of `split` under a release directory, or `path` itself when it is a file."""
    fam, r = family(name)
    root = Path(str(path)).expanduser()
    if root.is_file():
        return root
    rel = LOCAL[fam][split].format(r=r)
    for cand in (root / rel, root / Path(rel).name):
        if cand.exists():
            return cand
    return root / rel


def check_local(name: str, path: str | Path | None, split: str, key: str) -> None:
    """Before any model loads: the local copy exists, or the hub can be asked (`key`: the config group, task or
    calibration, whose `path` gives the copy)."""
    fam, _ = family(name)
    if path is None:
        offline = hub_offline()
        if offline:
            hub, config, splits = HUB[fam]
            raise UserError(f"{name}: no local copy given ({key}.path=null), so it would come from the "
                            f"hub ({hub}{'/' + config if config else ''}, split {splits[split].format(r=family(name)[1])}), "
                            f"but {' and '.join(offline)}=1 (llmlab runs offline by default). Give a local copy: "
                            f"{HOME[fam]}, or allow the hub with HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0.")
        return
    target = local_file(name, path, split)
    if not target.exists():
        raise UserError(f"{name}: {key}.path={path} has no {LOCAL[fam][split].format(r=family(name)[1])} "
                        f"(looked for {target}). Give {HOME[fam]}, or the file itself, or {key}.path=null to read the "
                        f"hub.")


def examples(name: str, path: str | Path | None, split: str) -> list[dict]:
    """Rows {prompt, answer[, cot]} of `split` ("train" or "test"), rendered as lib/data.py renders them."""
    fam, r = family(name)
    rows = _read_local(fam, local_file(name, path, split)) if path is not None else _read_hub(fam, r, split)
    render = {"anli": _anli, "boolq": _boolq, "commonsense_qa": _csqa, "race": _race, "winogrande": _winogrande}[fam]
    return [row for row in (render(x) for x in rows) if row is not None]


# -- reading ------------------------------------------------------------------------------------------
def _jsonl(path: Path) -> list[dict]:
    try:
        return [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is not a JSON-lines file ({err}); give the release's .jsonl file.") from None


def _read_local(fam: str, path: Path) -> list[dict]:
    if fam != "race":
        return _jsonl(path)
    if path.is_file():  # a .jsonl export with the hub's fields
        return _jsonl(path)
    files = sorted(path.glob("*/*.txt"), key=lambda p: (p.parent.name, int(p.stem) if p.stem.isdigit() else 0, p.stem))
    if not files:
        raise UserError(f"{path}: no RACE article files (<level>/<n>.txt); give {HOME['race']}.")
    rows = []
    for f in files:  # one article, several questions: one row per question, as the hub has it
        doc = json.loads(f.read_text(encoding="utf-8"))
        for q, opts, ans in zip(doc["questions"], doc["options"], doc["answers"]):
            rows.append({"article": doc["article"], "question": q, "options": opts, "answer": ans})
    return rows


def _read_hub(fam: str, r: int | None, split: str) -> list[dict]:
    from datasets import load_dataset

    hub, config, splits = HUB[fam]
    name = splits[split].format(r=r)
    try:
        kw = {"revision": ANLI_REVISION} if fam == "anli" else {}
        return list(load_dataset(hub, config, split=name, **kw))
    except Exception as err:
        raise UserError(f"{hub} ({name}) could not be read from the hub ({type(err).__name__}: {err}). Give a local "
                        f"copy: {HOME[fam]}.") from err


# -- rendering (lib/data.py prepare_input) ------------------------------------------------------------------
def _anli(x: dict) -> dict | None:
    premise = x["premise"] if "premise" in x else x["context"]
    label = x["label"]
    label = _ANLI_LETTER.get(label, label) if isinstance(label, str) else label
    if label not in (0, 1, 2):
        return None
    prompt, answer = f"Premise: {premise}\nHypothesis: {x['hypothesis']}\nLabel: ", NLI[label]
    return {"prompt": prompt, "answer": answer, "premise": premise, "hypothesis": x["hypothesis"],
            "cot": prompt + str(x.get("reason") or "") + " So the answer is " + answer + "."}


def _boolq(x: dict) -> dict:
    # passage and question joined with nothing between them, as the release does (its hand-written exemplars have
    # a space there; its test prompts do not)
    return {"prompt": f"Question: {x['passage']}{x['question']}\nAnswer: ", "answer": str(bool(x["answer"]))}


def _csqa(x: dict) -> dict:
    q = x["question"]
    if isinstance(q, dict):  # the release's nested layout
        stem, labels, texts = q["stem"], [c["label"] for c in q["choices"]], [c["text"] for c in q["choices"]]
    else:
        stem, labels, texts = q, x["choices"]["label"], x["choices"]["text"]
    choices = "\n".join(f"{lab}. {text}" for lab, text in zip(labels, texts))
    return {"prompt": f"Question: {stem}\nChoices:\n{choices}\nAnswer: ", "answer": x["answerKey"]}


def _race(x: dict) -> dict:
    options = "".join(f"{'ABCDE'[i]}. {o}\n" for i, o in enumerate(x["options"]))  # each line ends in \n
    return {"prompt": f"Article: {x['article']}\nQuestion: {x['question']}\nOptions:\n{options}\nAnswer: ",
            "answer": x["answer"]}


def _winogrande(x: dict) -> dict:
    return {"prompt": f"Sentence: {x['sentence']}\nOptions:\n1. {x['option1']}\n2. {x['option2']}\nAnswer: ",
            "answer": str(x["answer"])}
