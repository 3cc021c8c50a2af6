"""X-KDE training data from parallel zsRE question/answer files.

Input: one file per language, line-aligned across languages, `question<TAB>answer` per line
(ReMaKE data/zsre_mend_train_{lang}_10000.txt; the answers are the edits' new answers).
Output (X-KDE, Wu et al. 2025, Sec. 3):

- XE-IT (cross-lingual edition instruction tuning): for each line i and each direction
  (source s, target t) an *in-scope* instruction — the update "q_s[i] a_s[i]" and the query
  q_t[i], answered a_t[i] — and, for a fraction `out_of_scope_ratio` of them, an *out-of-scope*
  instruction — the same update with the query q_t[j] of another line j, answered as that line
  states it (a_t[j]): the update must not leak into unrelated queries.
- TL-PO (target-language preference optimization): preference pairs from sampled answers
  scored against the gold target-language answer (`preference_pairs`, official ORPO/src/exact.py).

The prompt is X_KDE eval/eval.py knowledge_edit_template (the official training data uses the
same instruction, in the chat template); the official file format is a list of
`{"id", "conversations": [{"from": "human", "value": prompt}, {"from": "gpt", "value": answer}]}`.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from llmlab.errors import UserError

LANG_NAMES = {"en": "English", "zh": "Chinese", "de": "German", "fr": "French", "es": "Spanish", "pt": "Portuguese",
              "ru": "Russian", "th": "Thai", "tr": "Turkish", "vi": "Vietnamese", "cz": "Czech", "du": "Dutch",
              "ja": "Japanese", "ko": "Korean", "ar": "Arabic"}
FILE_PATTERN = "zsre_mend_train_{lang}_10000.txt"


def lang_name(lang: str) -> str:
    return LANG_NAMES.get(lang, lang)


def xkde_prompt(src_question: str, new_answer: str, query: str, target_lang: str) -> str:
    """X_KDE eval/eval.py knowledge_edit_template: the update in the source language, the query in
    the target language, the answer asked for in the target language (`target_lang` a code or a name)."""
    return update_prompt(f"{src_question} {new_answer}", query, target_lang)


def update_prompt(update: str, query: str, target_lang: str) -> str:
    """The X-KDE instruction around an update text ("question new-answer")."""
    name = LANG_NAMES.get(target_lang, target_lang)
    return (f"Please acknowledge the updated information provided below and respond to the subsequent query in {name}."
            f"\n\n[Updated Information]:\n{update}\n\n[Query]:\n{query}")


def read_parallel(files: dict[str, str | Path], limit: int | None = None) -> list[dict[str, tuple[str, str]]]:
    """Rows `{lang: (question, answer)}` from line-aligned `question<TAB>answer` files."""
    if not files:
        raise UserError("xkde data: no parallel files given (one `question<TAB>answer` file per language).")
    per_lang = {}
    for lang, path in files.items():
        path = Path(path).expanduser()
        if not path.exists():
            raise UserError(f"xkde data: the {lang} file {path} does not exist. Point method.data_dir at the directory "
                            f"holding {FILE_PATTERN.format(lang=lang)} (ReMaKE data/), or set method.files.{lang}.")
        rows = []
        lines = path.read_text(encoding="utf-8").splitlines()
        while lines and not lines[-1].strip():  # trailing blank lines
            lines.pop()
        for n, line in enumerate(lines, 1):
            parts = line.split("\t")
            if len(parts) != 2:
                raise UserError(f"xkde data: {path} line {n} should be `question<TAB>answer`; got {line[:120]!r}.")
            q, a = parts[0].strip(), parts[1].strip()
            rows.append((q, a) if q and a else None)  # an empty side: the line is skipped in every language
        per_lang[lang] = rows
    sizes = {lang: len(r) for lang, r in per_lang.items()}
    if len(set(sizes.values())) != 1:
        raise UserError(f"xkde data: the parallel files are not line-aligned (lines per language: {sizes}).")
    n = next(iter(sizes.values()))
    complete = [i for i in range(n) if all(per_lang[lang][i] is not None for lang in per_lang)]
    complete = complete[:limit] if limit else complete
    return [{lang: per_lang[lang][i] for lang in per_lang} for i in complete]


def parallel_files(data_dir: str | Path, langs: list[str], pattern: str = FILE_PATTERN) -> dict[str, Path]:
    return {lang: Path(data_dir).expanduser() / pattern.format(lang=lang) for lang in langs}


def xeit_examples(rows: list[dict], directions: list[tuple[str, str]], out_of_scope_ratio: float = 0.5,
                  seed: int = 0) -> list[dict]:
    """XE-IT instructions `{"prompt", "answer", "scope", "source", "target", "row"}` (deterministic by seed)."""
    rng = random.Random(seed)
    out = []
    for i, row in enumerate(rows):
        for s, t in directions:
            if s not in row or t not in row:
                raise UserError(f"xkde data: direction {s}->{t} needs both languages in the files (have {sorted(row)}).")
            q_s, a_s = row[s]
            q_t, a_t = row[t]
            out.append({"prompt": xkde_prompt(q_s, a_s, q_t, t), "answer": a_t, "scope": "in", "source": s,
                        "target": t, "row": i})
            if len(rows) > 1 and rng.random() < out_of_scope_ratio:
                j = rng.choice([k for k in range(len(rows)) if k != i]) if len(rows) < 64 else _other(rng, i, len(rows))
                q_o, a_o = rows[j][t]
                out.append({"prompt": xkde_prompt(q_s, a_s, q_o, t), "answer": a_o, "scope": "out", "source": s,
                            "target": t, "row": i})
    return out


def _other(rng: random.Random, i: int, n: int) -> int:
    j = rng.randrange(n - 1)
    return j + 1 if j >= i else j


def read_xeit_json(path: str | Path) -> list[dict]:
    """Examples from a file in the official format (list of {"conversations": [human, gpt]})."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"xkde data: {path} does not exist (method.xeit_file: an X-KDE training JSON with "
                        f"'conversations').")
    data = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for n, item in enumerate(data if isinstance(data, list) else []):
        conv = item.get("conversations") if isinstance(item, dict) else None
        if not conv or len(conv) < 2 or "value" not in conv[0] or "value" not in conv[1]:
            raise UserError(f"xkde data: {path} record {n} needs 'conversations': [{{from: human, value}}, "
                            f"{{from: gpt, value}}].")
        out.append({"prompt": conv[0]["value"], "answer": conv[1]["value"], "scope": item.get("scope", "in"),
                    "row": n})
    if not out:
        raise UserError(f"xkde data: {path} holds no examples (expected a JSON list of conversations).")
    return out


def to_official(examples: list[dict]) -> list[dict]:
    return [{"id": n, "conversations": [{"from": "human", "value": e["prompt"]}, {"from": "gpt", "value": e["answer"]}],
             **{k: e[k] for k in ("scope", "source", "target") if k in e}} for n, e in enumerate(examples)]


def preference_pairs(prompt: str, gold: str, samples: list[str], scores: list[float]) -> list[dict]:
    """TL-PO pairs (official ORPO/src/batched.py + exact.py): samples equal to the gold answer are
    dropped and duplicates merged; every higher-scored sample is preferred over every lower-scored
    different one; the gold answer is preferred over the best sample."""
    seen, kept = set(), []
    for text, score in zip(samples, scores):
        text = text.strip()
        if not text or text == gold.strip() or text in seen:
            continue
        seen.add(text)
        kept.append((text, float(score)))
    kept.sort(key=lambda p: p[1], reverse=True)
    pairs = []
    for a in range(len(kept)):
        for b in range(a + 1, len(kept)):
            if kept[a][1] != kept[b][1]:
                pairs.append({"prompt": prompt, "chosen": kept[a][0], "rejected": kept[b][0],
                              "score_diff": kept[a][1] - kept[b][1]})
    if kept:
        pairs.append({"prompt": prompt, "chosen": gold, "rejected": kept[0][0], "score_diff": kept[0][1]})
    return pairs
