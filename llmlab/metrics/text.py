"""Text-overlap metrics on strings (SQuAD-style normalization, token F1, ROUGE).

Pure functions; each returns a float in [0, 1].
"""

from __future__ import annotations

import re
import string
from collections import Counter

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and English articles, collapse whitespace (SQuAD / LongBench)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when the normalized strings are equal."""
    return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1_tokens(pred_tokens: list[str], ref_tokens: list[str]) -> float:
    """Harmonic mean of token precision and recall, counting repeated tokens (bag of words)."""
    common = Counter(pred_tokens) & Counter(ref_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(ref_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, reference: str) -> float:
    """Token F1 of the normalized strings, split on whitespace (SQuAD / LongBench qa_f1)."""
    return token_f1_tokens(normalize_answer(prediction).split(), normalize_answer(reference).split())


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def rouge_n_f(prediction: str, reference: str, n: int = 1) -> float:
    """ROUGE-N F-measure on lower-cased word n-grams (as rouge-score without stemming)."""
    pred, ref = _words(prediction), _words(reference)
    pred_ngrams = Counter(tuple(pred[i:i + n]) for i in range(len(pred) - n + 1))
    ref_ngrams = Counter(tuple(ref[i:i + n]) for i in range(len(ref) - n + 1))
    overlap = sum((pred_ngrams & ref_ngrams).values())
    if overlap == 0:
        return 0.0
    precision = overlap / sum(pred_ngrams.values())
    recall = overlap / sum(ref_ngrams.values())
    return 2 * precision * recall / (precision + recall)


def lcs_length(a: list, b: list) -> int:
    """Length of the longest common subsequence (O(len(a)·len(b)) time, O(len(b)) memory)."""
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l_f_tokens(pred: list, ref: list) -> float:
    """ROUGE-L F-measure of two token lists."""
    lcs = lcs_length(pred, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def rouge_l_f(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure on lower-cased words."""
    return rouge_l_f_tokens(_words(prediction), _words(reference))


def rouge_tokens(text: str, stem: bool = True) -> list[str]:
    """Tokens as Google's rouge-score tokenizes them: lower-case, runs of [a-z0-9], Porter-stemmed
    when longer than 3 characters (rouge_score/tokenize.py). Uses NLTK's Porter stemmer directly,
    as rouge-score does, without importing rouge-score (whose absl logging hooks the root logger)."""
    tokens = [t for t in re.split(r"\s+", re.sub(r"[^a-z0-9]+", " ", text.lower())) if t]
    if stem:
        stemmer = _porter()
        tokens = [stemmer.stem(t) if len(t) > 3 else t for t in tokens]
    return [t for t in tokens if re.fullmatch(r"[a-z0-9]+", t)]


def _porter():
    global _PORTER
    if _PORTER is None:
        from nltk.stem import porter

        _PORTER = porter.PorterStemmer()  # NLTK_EXTENSIONS mode, as rouge_score/tokenizers.py
    return _PORTER


_PORTER = None


def rouge1_f_stemmed(prediction: str, reference: str) -> float:
    """ROUGE-1 F as rouge-score computes it with use_stemmer=True."""
    pred, ref = Counter(rouge_tokens(prediction)), Counter(rouge_tokens(reference))
    overlap = sum((pred & ref).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / sum(pred.values()), overlap / sum(ref.values())
    return 2 * precision * recall / (precision + recall)
