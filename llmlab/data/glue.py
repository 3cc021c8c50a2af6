"""GLUE: the tasks, their files and their metrics.

Two sources give the same examples:
- local files in the official GLUE layout, as `download_glue_data.py` writes them
  (`<dir>/<Task>/train.tsv`, `dev.tsv`; CoLA has no header line, MRPC's header starts with a BOM,
  MNLI has `dev_matched.tsv` / `dev_mismatched.tsv`);
- the hub dataset `nyu-mll/glue` (its `validation` split is the GLUE dev set).

`SUBSETS` says for each task where its text and label sit in the TSV, how many labels it has
(1: regression, STS-B), which metrics GLUE defines for it and the fine-tuning schedule of the
FSAM release (WHU-ZQH/FSAM4PLM scripts/<task>-train.sh: RoBERTa-large, 10 epochs, 6 % warmup,
polynomial decay; lr and batch size per task).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from llmlab.errors import UserError


@dataclass(frozen=True)
class Subset:
    name: str            # our name (task.subset)
    folder: str          # the GLUE folder name
    text: tuple          # TSV column(s) of the sentence(s): header names, or indices for header-less files
    label: str | int     # TSV column of the label
    labels: tuple = ()   # label strings in id order (empty: regression)
    header: bool = True
    dev: str = "dev"     # dev file stem (MNLI: dev_matched)
    metrics: tuple = ("accuracy",)  # GLUE's metrics for the task; their mean is `glue_task_score`
    lr: float = 1e-5     # FSAM release scripts/<task>-train.sh LR
    batch_size: int = 32  # scripts/<task>-train.sh MAX_SENTENCES

    @property
    def num_labels(self) -> int:
        return len(self.labels) or 1

    @property
    def regression(self) -> bool:
        return not self.labels


SUBSETS: dict[str, Subset] = {s.name: s for s in (
    # CoLA's TSV has no header: source, label, original label, sentence
    Subset("cola", "CoLA", (3,), 1, ("0", "1"), header=False, metrics=("matthews_corr",), lr=1e-5),
    Subset("sst2", "SST-2", ("sentence",), "label", ("0", "1"), lr=1e-5, batch_size=64),
    Subset("mrpc", "MRPC", ("#1 String", "#2 String"), "Quality", ("0", "1"), metrics=("accuracy", "f1"), lr=1e-5),
    Subset("stsb", "STS-B", ("sentence1", "sentence2"), "score", metrics=("pearson", "spearman"), lr=2e-5),
    Subset("qqp", "QQP", ("question1", "question2"), "is_duplicate", ("0", "1"), metrics=("accuracy", "f1")),
    Subset("mnli", "MNLI", ("sentence1", "sentence2"), "gold_label", ("entailment", "neutral", "contradiction"),
           dev="dev_matched"),
    Subset("mnli_mm", "MNLI", ("sentence1", "sentence2"), "gold_label", ("entailment", "neutral", "contradiction"),
           dev="dev_mismatched"),
    Subset("qnli", "QNLI", ("question", "sentence"), "label", ("entailment", "not_entailment")),
    Subset("rte", "RTE", ("sentence1", "sentence2"), "label", ("entailment", "not_entailment"), lr=2e-5),
    Subset("wnli", "WNLI", ("sentence1", "sentence2"), "label", ("0", "1")),
)}
HUB_ID = "nyu-mll/glue"
HUB_CONFIG = {"mnli": "mnli", "mnli_mm": "mnli"}
HUB_SPLIT = {"mnli": "validation_matched", "mnli_mm": "validation_mismatched"}
# the hub's label ids are in the same order as `labels` (its ClassLabel names), so its ints are kept


def subset(name: str) -> Subset:
    if name not in SUBSETS:
        raise UserError(f"task.subset={name!r} is not a GLUE task; use one of {', '.join(SUBSETS)}.")
    return SUBSETS[name]


def tsv_path(data_dir: str | Path, sub: Subset, split: str) -> Path:
    stem = sub.dev if split == "dev" else split
    return Path(data_dir).expanduser() / sub.folder / f"{stem}.tsv"


def check_local(data_dir: str | Path, sub: Subset, splits=("train", "dev")) -> None:
    """A one-paragraph error naming the missing file and how to provide it."""
    for split in splits:
        path = tsv_path(data_dir, sub, split)
        if not path.is_file():
            raise UserError(
                f"GLUE {sub.name} {split} file {path} does not exist. task.data_dir must be a directory in the "
                f"official GLUE layout (<dir>/{sub.folder}/train.tsv and {sub.dev}.tsv, as download_glue_data.py "
                f"writes them), or set task.data_dir=null to read the hub dataset {HUB_ID} (needs "
                f"HF_DATASETS_OFFLINE=0 and the hub).")


def read_tsv(path: Path, sub: Subset) -> list[dict]:
    """Examples {text_a, text_b, label, idx} of one GLUE TSV (labels: class id, or float for STS-B)."""
    with open(path, encoding="utf-8-sig", newline="") as f:  # utf-8-sig: MRPC's header has a BOM
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if sub.header:
        head, rows = rows[0], rows[1:]
        try:
            cols = [head.index(c) for c in sub.text]
            label_col = head.index(sub.label)
        except ValueError as err:
            raise UserError(f"{path}: header {head} lacks a column GLUE {sub.name} needs ({err}); is it the "
                            f"official GLUE TSV?") from None
    else:
        cols, label_col = list(sub.text), int(sub.label)
    out = []
    for i, row in enumerate(rows):
        if not row or len(row) <= max(cols + [label_col]):
            continue  # blank trailing line; GLUE files have no short rows otherwise
        raw = row[label_col].strip()
        if sub.regression:
            label: float | int = float(raw)
        elif raw in sub.labels:
            label = sub.labels.index(raw)
        else:
            raise UserError(f"{path} line {i + 1 + sub.header}: label {raw!r} is not one of {list(sub.labels)}.")
        out.append({"idx": i, "text_a": row[cols[0]], "text_b": row[cols[1]] if len(cols) > 1 else None,
                    "label": label})
    return out


def read_hub(sub: Subset, split: str) -> list[dict]:
    from datasets import load_dataset

    hub_split = HUB_SPLIT.get(sub.name, "validation") if split == "dev" else split
    try:
        ds = load_dataset(HUB_ID, HUB_CONFIG.get(sub.name, sub.name), split=hub_split)
    except Exception as err:  # offline, or no such config
        raise UserError(f"GLUE {sub.name} {split} could not be read from the hub ({HUB_ID}): {err}. Give a local "
                        f"copy in the GLUE layout with task.data_dir=<dir>.") from err
    fields = [c for c in ds.column_names if c not in ("label", "idx")]
    out = []
    for row in ds:
        out.append({"idx": row.get("idx"), "text_a": row[fields[0]], "text_b": row[fields[1]] if len(fields) > 1 else None,
                    "label": float(row["label"]) if sub.regression else int(row["label"])})
    return out


def load(data_dir: str | Path | None, name: str, split: str) -> list[dict]:
    sub = subset(name)
    if data_dir is None:
        return read_hub(sub, split)
    check_local(data_dir, sub, (split,))
    return read_tsv(tsv_path(data_dir, sub, split), sub)
