"""Readers for the local benchmark files the shipped lm-eval tasks use (`custom_dataset: !function
local_data.<name>`). lm-eval calls them with the task's `metadata` and `dataset_kwargs` as keywords.
Self-contained (datasets only): `lm_eval --include_path <run>/lm_eval_tasks` runs them without llmlab."""

from __future__ import annotations

from pathlib import Path

import datasets

# e-SNLI labels -> the index of lm-eval's NLI choices ["True", "Neither", "False"] (its ANLI tasks)
_NLI = {"entailment": 0, "neutral": 1, "contradiction": 2}


def esnli(path: str, **_) -> datasets.DatasetDict:
    """e-SNLI's release layout: line-aligned s1/s2/labels/preproc1_expl_1 .dev (validation) and .test."""
    root = Path(path)
    splits = {}
    for name, split in (("validation", "dev"), ("test", "test")):
        if not (root / f"s1.{split}").is_file():
            continue
        read = lambda part: (root / f"{part}.{split}").read_text(encoding="utf-8").splitlines()
        rows = [{"premise": p.strip(), "hypothesis": h.strip(), "label": _NLI[lab.strip()], "explanation": e.strip()}
                for p, h, lab, e in zip(read("s1"), read("s2"), read("labels"), read("preproc1_expl_1"))
                if lab.strip() in _NLI]
        splits[name] = datasets.Dataset.from_list(rows)
    if not splits:
        raise FileNotFoundError(f"esnli_local: no s1.dev or s1.test under {root} (the e-SNLI release layout)")
    return datasets.DatasetDict(splits)
