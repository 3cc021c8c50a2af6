"""Calibration data for pruning, as "Is C4 Dataset Optimal for Pruning?" builds it (Bandari et al., EMNLP 2024;
official code abx393/llm-pruning-calibration-data, `lib/data.py`).

`windows(spec, tokenizer)` returns `nsamples` token windows of `seqlen` (with their attention masks), from
one source in one format:

sources
  text        random windows of a local text file or directory (WikiText-2 here; get_wikitext2 joins the text)
  wikitext2   the hub's wikitext-2-raw-v1 train, or a local file (`path`)
  c4 pile oscar redpajama
              pre-training text: a random document longer than `seqlen`, a random window of it (get_c4);
              from the hub at the release's files, or a local .jsonl with a "text" field (`path`)
  gsm8k svamp mawps esnli anli commonsense_qa race winogrande
              task data, each example rendered with the release's prompt ("Question: ...\\nAnswer: ",
              "Premise: ...\\nHypothesis: ...\\nLabel: ", ...); local files for GSM8K (jsonl), SVAMP (SVAMP.json),
              MAWPS (the cv_mawps csv), e-SNLI (s1/s2/labels/expl files), ANLI, CommonsenseQA, RACE, WinoGrande
              (their release layouts, llmlab/data/qa_sets.py), else the hub
  random      random alphanumeric strings (get_random)     ellipses  "....." (get_ellipses): the controls
formats (task sources; `--input_format` / `--rationale` of main.py)
  zero        the question only, padded to seqlen (input_format=zero)
  single      one question and its answer, padded to seqlen (input_format=single)
  icl         question-answer examples concatenated until longer than seqlen, a random window of seqlen
              (input_format=concat, the release's default)
  cot         as icl, each example with its rationale ("... So the answer is X."; --rationale): GSM8K's
              worked solution, e-SNLI's explanation, ANLI's reason
Each example is tokenized on its own (with the tokenizer's special tokens, so a LLaMA BOS starts every
concatenated example, as the release does). Pads: the release adds a new "[PAD]" token; here the tokenizer's
own pad (else EOS) fills, on the left (`--padding_side left`), with attention mask 0. The pads still pass
through the blocks and enter the pruners' statistics, as in the release's hooks.
"""

from __future__ import annotations

import csv
import json
import random
import string
from dataclasses import dataclass
from pathlib import Path

import torch

from llmlab.data import qa_sets
from llmlab.errors import UserError
from llmlab.paths import hub_offline

FORMATS = ("zero", "single", "icl", "cot")
TEXT_SOURCES = ("text", "wikitext2", "c4", "pile", "oscar", "redpajama")
TASK_SOURCES = ("gsm8k", "svamp", "mawps", "esnli", "anli", "commonsense_qa", "race", "winogrande")
CONTROLS = ("random", "ellipses")
SOURCES = TEXT_SOURCES + TASK_SOURCES + CONTROLS
RATIONALES = ("gsm8k", "esnli", "anli")
# the release's hub datasets (lib/data.py get_<source>)
HUB = {
    "wikitext2": ("wikitext", "wikitext-2-raw-v1", "train"),
    "c4": ("allenai/c4", None, "train"),  # data_files en/c4-train.00000-of-01024.json.gz, revision 607bd4c8
    "pile": ("monology/pile-uncopyrighted", None, "train[:5000]"),
    "oscar": ("oscar", "unshuffled_deduplicated_en", "train[:5000]"),
    "redpajama": ("togethercomputer/RedPajama-Data-V2", "sample", "train"),
    "gsm8k": ("gsm8k", "main", "train"),
    "svamp": ("ChilleD/SVAMP", None, "train"),
    "mawps": ("MU-NLPC/Calc-mawps", None, "train"),
    "esnli": ("esnli", None, "train"),
    "anli": ("anli", None, "train_r1"),
    "commonsense_qa": ("commonsense_qa", None, "train"),
    "race": ("race", "all", "train"),
    "winogrande": ("winogrande", "winogrande_m", "train"),
}
NLI = ["entailment", "neutral", "contradiction"]


@dataclass
class Calibration:
    source: str = "text"
    format: str = "icl"
    path: str | None = None       # a local copy (file or directory); null: the hub (or, for `text`, Python docstrings)
    nsamples: int = 128           # main.py --nsamples 128
    seqlen: int = 2048            # main.py --seqlen 2048
    seed: int = 0                 # main.py --seed 0
    padding_side: str = "left"    # main.py --padding_side left

    def __post_init__(self):
        if self.source == "none":
            raise UserError("calibration=none (no calibration data) is for the rows that need none: method=none (the "
                            "dense model) and magnitude pruning. Wanda and SparseGPT calibrate: choose a source, "
                            f"calibration=<{'|'.join(SOURCES)}>.")
        if self.source not in SOURCES:
            raise UserError(f"calibration.source={self.source!r} is not a calibration source; use one of "
                            f"{', '.join(SOURCES)}.")
        if self.format not in FORMATS:
            raise UserError(f"calibration.format={self.format!r}; use one of {', '.join(FORMATS)} (zero: question only, "
                            f"single: one example, icl: concatenated examples, cot: with rationales).")
        if self.format == "cot" and self.source in TASK_SOURCES and self.source not in RATIONALES:
            raise UserError(f"calibration.format=cot needs rationales; {self.source} has none in the release's data "
                            f"(its SVAMP rationales are LLM outputs not published). Sources with rationales: "
                            f"{', '.join(RATIONALES)}.")
        if self.padding_side not in ("left", "right"):
            raise UserError(f"calibration.padding_side={self.padding_side!r}; use left or right.")

    def identity(self) -> dict:
        """What decides the windows: the settings and the data (a local copy's content hash, or the hub name)."""
        import hashlib

        data: str = f"hub:{_hub_name(self.source)}" if self.source in HUB else self.source
        if self.path:
            path = Path(str(self.path)).expanduser()
            files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            digest = hashlib.sha256()
            for f in files:
                digest.update(f.name.encode())
                digest.update(f.read_bytes())
            data = digest.hexdigest()[:16]
        elif self.source == "text":
            data = "python stdlib docstrings"
        return {"source": self.source, "format": self.format, "nsamples": self.nsamples, "seqlen": self.seqlen,
                "seed": self.seed, "padding_side": self.padding_side, "data": data}

    def check(self) -> None:
        """Before any model loads: a local path that does not exist, or the hub asked for while offline."""
        if self.source in qa_sets.HUB:
            qa_sets.check_local(self.source, self.path, "train", "calibration")
        elif self.path and not Path(str(self.path)).expanduser().exists():
            raise UserError(f"calibration.path={self.path} does not exist (source {self.source}). Give a local copy "
                            f"({_LOCAL_HINT.get(self.source, 'a file')}) or calibration.path=null to read "
                            f"{_hub_name(self.source)} from the hub.")
        elif not self.path and self.source in HUB and hub_offline():
            raise UserError(f"calibration={self.source} with no local copy reads {_hub_name(self.source)} from the hub, "
                            f"but llmlab runs offline by default (HF_DATASETS_OFFLINE=1). Give a local copy with "
                            f"calibration.path=<{_LOCAL_HINT.get(self.source, 'a file')}>, or allow the hub with "
                            f"HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0.")


_LOCAL_HINT = {"text": "a .txt file or a directory of .txt files", "wikitext2": "a .txt file",
               "gsm8k": "GSM8K train.jsonl", "svamp": "SVAMP.json", "mawps": "a cv_mawps fold csv",
               "esnli": "the e-SNLI directory with s1.<split>, s2.<split>, labels.<split>, preproc1_expl_1.<split>",
               **qa_sets.HOME}


def _hub_name(source: str) -> str:
    return HUB[source][0] if source in HUB else "(no hub copy: give a path)"


# -- examples of the task sources: {prompt, answer, rationale} ----------------------------------------
def _read_hub(source: str):
    from datasets import load_dataset

    name, config, split = HUB[source]
    try:
        if source == "c4":
            return load_dataset(name, revision="607bd4c8450a42878aa9ddc051a65a055450ef87", split="train",
                                data_files={"train": "en/c4-train.00000-of-01024.json.gz"})
        return load_dataset(name, config, split=split)
    except Exception as err:
        raise UserError(f"calibration source {source}: {name} could not be read from the hub ({type(err).__name__}: "
                        f"{err}). Give a local copy with calibration.path=<{_LOCAL_HINT.get(source, 'a file')}>.") from err


def task_examples(c: Calibration) -> list[dict]:
    """The source's training examples as {prompt, answer, rationale}, rendered as the release renders them."""
    path = Path(str(c.path)).expanduser() if c.path else None
    if c.source == "gsm8k":
        rows = [json.loads(l) for l in path.open(encoding="utf-8") if l.strip()] if path else list(_read_hub("gsm8k"))
        out = []
        for r in rows:
            rationale, label = (s.strip() for s in r["answer"].split("####"))
            out.append({"prompt": f"Question: {r['question']}\nAnswer: ", "answer": label,
                        "cot": f"Question: {r['question']}\nAnswer: {rationale}. So the answer is {label}."})
        return out
    if c.source == "svamp":
        rows = json.loads(path.read_text(encoding="utf-8")) if path else list(_read_hub("svamp"))
        return [{"prompt": f"Question: {r['Body']} {r['Question']}\nAnswer: ", "answer": str(r["Equation"])} for r in rows]
    if c.source == "mawps":
        if path:
            with path.open(encoding="utf-8", newline="") as f:
                rows = [{"question": r["Question"], "expression": r["Equation"]} for r in csv.DictReader(f)]
        else:
            rows = list(_read_hub("mawps"))
        return [{"prompt": f"Question: {r['question']}\nAnswer: ", "answer": str(r["expression"])} for r in rows]
    if c.source == "esnli":
        if path:
            split = _esnli_split(path)
            read = lambda name: (path / f"{name}.{split}").read_text(encoding="utf-8").splitlines()
            rows = [{"premise": p, "hypothesis": h, "label": NLI.index(lab.strip()), "explanation_1": e}
                    for p, h, lab, e in zip(read("s1"), read("s2"), read("labels"), read("preproc1_expl_1"))]
        else:
            rows = list(_read_hub("esnli"))
        out = []
        for r in rows:
            if r["label"] not in (0, 1, 2):
                continue  # the hub's esnli has -1 for no gold label
            prompt, answer = f"Premise: {r['premise']}\nHypothesis: {r['hypothesis']}\nLabel: ", NLI[r["label"]]
            out.append({"prompt": prompt, "answer": answer,
                        "cot": prompt + str(r.get("explanation_1") or "") + " So the answer is " + answer + "."})
        return out
    # anli (round 1, as the release calibrates), commonsense_qa, race, winogrande: their releases or the hub
    return qa_sets.examples(c.source, c.path, "train")


def _esnli_split(path: Path) -> str:
    for split in ("train", "dev", "test"):
        if (path / f"s1.{split}").is_file():
            return split
    raise UserError(f"calibration.path={path}: no e-SNLI files (s1.<train|dev|test>, s2, labels, preproc1_expl_1).")


# -- the windows --------------------------------------------------------------------------------------
def _pad_id(tok) -> int:
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    return int(pad if pad is not None else 0)


def _padded(ids: list[int], c: Calibration, pad: int) -> tuple[list[int], list[int]]:
    ids = ids[:c.seqlen] if c.padding_side == "right" else ids[-c.seqlen:]
    fill = c.seqlen - len(ids)
    mask = [1] * len(ids)
    if c.padding_side == "left":
        return [pad] * fill + ids, [0] * fill + mask
    return ids + [pad] * fill, mask + [0] * fill


def _concat_window(next_ids, c: Calibration, rng: random.Random) -> list[int]:
    """Examples appended until longer than seqlen, then a random window of seqlen (the release's concat)."""
    ids: list[int] = []
    while len(ids) <= c.seqlen:
        ids += next_ids()
    start = rng.randint(0, len(ids) - c.seqlen - 1)
    return ids[start:start + c.seqlen]


def windows(c: Calibration, tokenizer) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`nsamples` (ids [1, seqlen], attention mask [1, seqlen]) windows of the calibration source."""
    rng = random.Random(c.seed)  # random.seed(seed) in every get_<source>
    tok = lambda text: tokenizer(text)["input_ids"]
    pad = _pad_id(tokenizer)
    out: list[tuple[list[int], list[int]]] = []
    if c.source in CONTROLS:
        for _ in range(c.nsamples):
            if c.source == "random":
                make = lambda: tok("".join(rng.choice(string.ascii_letters + string.digits) for _ in range(1000)))
            else:
                make = lambda: tok("." * 1000)
            ids: list[int] = []
            while len(ids) <= c.seqlen:
                ids += make()
            out.append((ids[:c.seqlen], [1] * c.seqlen))
    elif c.source in TEXT_SOURCES:
        for ids in _text_windows(c, tokenizer, rng):
            out.append((ids, [1] * len(ids)))
    else:
        examples = task_examples(c)
        if not examples:
            raise UserError(f"calibration source {c.source}: no examples read from {c.path or _hub_name(c.source)}.")
        key = "cot" if c.format == "cot" else None
        pick = lambda: examples[rng.randint(0, len(examples) - 1)]
        for _ in range(c.nsamples):
            if c.format == "zero":
                out.append(_padded(tok(pick()["prompt"]), c, pad))
            elif c.format == "single":
                e = pick()
                out.append(_padded(tok(e["prompt"] + e["answer"]), c, pad))
            else:
                text = (lambda e: e[key]) if key else (lambda e: e["prompt"] + e["answer"])
                ids = _concat_window(lambda: tok(text(pick())), c, rng)
                out.append((ids, [1] * len(ids)))
    return [(torch.tensor([ids]), torch.tensor([mask])) for ids, mask in out]


def _text_windows(c: Calibration, tokenizer, rng: random.Random) -> list[list[int]]:
    if c.source in ("text", "wikitext2") or (c.path and Path(str(c.path)).suffix == ".txt") or \
            (c.path and Path(str(c.path)).is_dir()):
        if c.path:
            path = Path(str(c.path)).expanduser()
            files = sorted(path.glob("*.txt")) if path.is_dir() else [path]
            text = "\n\n".join(f.read_text(encoding="utf-8") for f in files)
        elif c.source == "wikitext2":
            text = " ".join(_read_hub("wikitext2")["text"])
        else:
            from llmlab.corpus import stdlib_text

            text = stdlib_text()
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) <= c.seqlen + 1:
            raise UserError(f"calibration text ({c.path or c.source}) has {len(ids)} tokens; windows of "
                            f"calibration.seqlen={c.seqlen} need more.")
        return [ids[s:s + c.seqlen] for s in (rng.randint(0, len(ids) - c.seqlen - 1) for _ in range(c.nsamples))]
    # documents: a random one longer than seqlen, a random window of it (get_c4)
    if c.path:
        docs = [json.loads(l)["text"] for l in Path(str(c.path)).expanduser().open(encoding="utf-8") if l.strip()]
    else:
        docs = _read_hub(c.source)["text"]
    out = []
    for _ in range(c.nsamples):
        for _attempt in range(100000):
            ids = tokenizer(docs[rng.randint(0, len(docs) - 1)])["input_ids"]
            if len(ids) > c.seqlen:
                break
        else:
            raise UserError(f"calibration source {c.source}: no document longer than seqlen={c.seqlen} tokens.")
        start = rng.randint(0, len(ids) - c.seqlen - 1)
        out.append(ids[start:start + c.seqlen])
    return out
