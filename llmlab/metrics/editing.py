"""Knowledge-editing metrics: pure functions of token ids or strings.

- `token_accuracy`: teacher-forced argmax accuracy over the target tokens — the fraction of
  target positions whose argmax prediction (given the prompt and the gold target prefix) is the
  gold token (EasyEdit evaluate_utils.test_prediction_acc; X-KDE eval/eval.py icl_lm_eval).
- `token_agreement`: locality — the fraction of positions where the argmax tokens after the
  edit equal those before it (EasyEdit compute_locality_quality).
- `exact_match_ml` / `token_f1_ml`: SQuAD-style answer EM / F1 on generated text, made
  multilingual: Unicode punctuation is dropped and CJK/Thai characters count as one token each
  (whitespace does not separate words in those scripts).
- `answer_matches`: MQuAKE's check that a generated answer is the gold answer or one of its aliases.
"""

from __future__ import annotations

import math
import re
import unicodedata

from llmlab.metrics.text import token_f1_tokens

_ARTICLES = re.compile(r"\b(a|an|the)\b")


def token_accuracy(predicted: list[int], gold: list[int]) -> float:
    """Fraction of target positions whose argmax token equals the gold token (nan when no target)."""
    if len(predicted) != len(gold):
        raise ValueError(f"token_accuracy: {len(predicted)} predictions for {len(gold)} gold tokens")
    if not gold:
        return math.nan
    return sum(int(p == g) for p, g in zip(predicted, gold)) / len(gold)


def token_agreement(before: list[int], after: list[int]) -> float:
    """Fraction of positions where the argmax tokens after an edit equal those before it."""
    if len(before) != len(after):
        raise ValueError(f"token_agreement: {len(before)} tokens before, {len(after)} after")
    if not before:
        return math.nan
    return sum(int(a == b) for a, b in zip(before, after)) / len(before)


def _is_unsegmented(ch: str) -> bool:
    """Characters of scripts written without spaces between words (CJK, kana, hangul, Thai, ...)."""
    code = ord(ch)
    return (
        0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0x20000 <= code <= 0x2A6DF  # CJK ideographs
        or 0xF900 <= code <= 0xFAFF or 0x3040 <= code <= 0x30FF or 0xAC00 <= code <= 0xD7AF  # compat, kana, hangul
        or 0x0E00 <= code <= 0x0E7F or 0x0E80 <= code <= 0x0EFF or 0x1000 <= code <= 0x109F  # Thai, Lao, Myanmar
    )


def normalize_answer_ml(text: str) -> str:
    """Lower-case, drop Unicode punctuation and English articles, collapse whitespace."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(ch for ch in text if not unicodedata.category(ch).startswith("P"))
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def answer_tokens(text: str) -> list[str]:
    """Tokens of a normalized answer: whitespace words, with each CJK/Thai character its own token."""
    tokens: list[str] = []
    for word in normalize_answer_ml(text).split():
        buf = ""
        for ch in word:
            if _is_unsegmented(ch):
                if buf:
                    tokens.append(buf)
                    buf = ""
                tokens.append(ch)
            else:
                buf += ch
        if buf:
            tokens.append(buf)
    return tokens


def exact_match_ml(prediction: str, reference: str) -> float:
    """1.0 when the normalized answers have the same tokens (spaces inside CJK text do not matter)."""
    return float(answer_tokens(prediction) == answer_tokens(reference))


def token_f1_ml(prediction: str, reference: str) -> float:
    """Bag-of-tokens F1 of the normalized answers (CJK/Thai: per character)."""
    pred, ref = answer_tokens(prediction), answer_tokens(reference)
    if not pred and not ref:
        return 1.0
    return token_f1_tokens(pred, ref)


def answer_matches(prediction: str, answers: list[str]) -> bool:
    """MQuAKE: the generated answer is one of the gold answers/aliases (normalized exact match)."""
    pred = answer_tokens(prediction)
    return bool(pred) and any(pred == answer_tokens(a) for a in answers if a)


def nanmean(values) -> float:
    """Mean of the values that are not nan (nan when there are none)."""
    kept = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return sum(kept) / len(kept) if kept else math.nan
