"""LongBench's per-subset metrics, as THUDM/LongBench metrics.py and eval.py compute them.

Each function scores one prediction against one ground truth and returns a float in [0, 1];
`score_example` applies eval.py's post-processing (first line for trec/triviaqa/samsum/lsht)
and takes the max over the ground truths; `score_subset` is eval.py's `scorer`
(100 × mean, rounded to 2 decimals).

Where LongBench calls a third-party package we re-implement the computation that package
performs (no dependency; differences are listed here and tested):

- `rouge_l_longbench`: the `rouge` package (pltrdy/rouge 1.0.1, `Rouge().get_scores(...)["rouge-l"]["f"]`),
  which is *not* the textbook ROUGE-L nor what `rouge-score` computes: texts are split into
  "sentences" on every "." (empty pieces dropped), words are split on single spaces (case-sensitive,
  punctuation kept), and the summary-level union-LCS counts *distinct words*: the LCS of every
  (reference sentence, prediction sentence) pair is backtracked (ties go to the left-hand
  neighbour, as its `_recon_lcs`), the union of their word sets is the overlap, and m, n are the
  numbers of distinct words of reference and prediction; F = 2PR/(P+R+1e-8). An empty prediction
  (no sentence) scores 0, as LongBench's try/except. One difference: `rouge` backtracks
  recursively and raises RecursionError (then LongBench scores 0.0) when a sentence pair has about
  1,000 words together; we backtrack iteratively and score such pairs normally.
  `llmlab.metrics.text.rouge_l_f` (plain ROUGE-L on lower-cased words, as `rouge-score`) is the
  textbook measure; it gives different numbers and is recorded beside (`<subset>/rouge_l_f`).
- `code_sim_longbench`: `fuzzywuzzy.fuzz.ratio` in its pure-Python mode (difflib.SequenceMatcher,
  `int(round(100·ratio))`, equal strings 100, an empty string 0). With python-Levenshtein installed
  fuzzywuzzy uses Levenshtein.ratio instead, which can differ by a few points on some pairs.
- `classification_longbench`: as LongBench, including its two quirks: matched class names that are
  substrings of the ground truth are removed while iterating over the same list (so the element after
  a removed one is not checked), and the difflib fallback for "no class matched" is unreachable
  (`em_match_list != 0` is always true), so no match scores 0.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence

from llmlab.metrics.registry import register
from llmlab.metrics.text import normalize_answer, token_f1_tokens


def qa_f1_longbench(prediction: str, ground_truth: str, **_) -> float:
    """LongBench qa_f1_score: token F1 of SQuAD-normalized strings."""
    return token_f1_tokens(normalize_answer(prediction).split(), normalize_answer(ground_truth).split())


def _rouge_sentences(text: str) -> list[list[str]]:
    """The `rouge` package's preprocessing: split on '.', drop empty pieces, collapse spaces, split on ' '."""
    return [" ".join(piece.split()).split(" ") for piece in text.split(".") if len(piece) > 0]


def _lcs_words(x: list[str], y: list[str]) -> set[str]:
    """Words of one LCS of x and y, backtracked as `rouge`'s _recon_lcs (up when strictly larger, else left)."""
    n, m = len(x), len(y)
    table = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        xi, row, prev = x[i - 1], table[i], table[i - 1]
        for j in range(1, m + 1):
            row[j] = prev[j - 1] + 1 if xi == y[j - 1] else max(prev[j], row[j - 1])
    words = set()
    i, j = n, m
    while i > 0 and j > 0:
        if x[i - 1] == y[j - 1]:
            words.add(x[i - 1])
            i, j = i - 1, j - 1
        elif table[i - 1][j] > table[i][j - 1]:
            i -= 1
        else:
            j -= 1
    return words


def rouge_l_longbench(prediction: str, ground_truth: str, **_) -> float:
    """LongBench rouge_score: ROUGE-L F of the `rouge` package (summary-level, distinct words; see module doc)."""
    hyp = _rouge_sentences(prediction)
    ref = _rouge_sentences(ground_truth)
    if not hyp or not ref:
        return 0.0
    m = len({w for sent in ref for w in sent})
    n = len({w for sent in hyp for w in sent})
    union: set[str] = set()
    for ref_sent in ref:
        for hyp_sent in hyp:
            union |= _lcs_words(ref_sent, hyp_sent)
    recall, precision = len(union) / m, len(union) / n
    return 2.0 * (precision * recall) / (precision + recall + 1e-8)


def fuzz_ratio(a: str, b: str) -> int:
    """fuzzywuzzy.fuzz.ratio without python-Levenshtein: difflib ratio in integer percent."""
    if a == b:
        return 100
    if not a or not b:
        return 0
    return int(round(100 * difflib.SequenceMatcher(None, a, b).ratio()))


def code_sim_longbench(prediction: str, ground_truth: str, **_) -> float:
    """LongBench code_sim_score: fuzz ratio of the first prediction line with no '`', '#' or '//'."""
    first = ""
    for line in prediction.lstrip("\n").split("\n"):
        if "`" not in line and "#" not in line and "//" not in line:
            first = line
            break
    return fuzz_ratio(first, ground_truth) / 100


def classification_longbench(prediction: str, ground_truth: str, all_classes: Sequence[str] | None = None, **_) -> float:
    """LongBench classification_score (trec): 1/k when the ground truth is among the k class names found."""
    matches = [name for name in (all_classes or []) if name in prediction]
    # LongBench removes class names that are strict substrings of the ground truth while iterating over
    # the same list; the resulting skip of the following element is part of the official score.
    for name in matches:
        if name in ground_truth and name != ground_truth:
            matches.remove(name)
    return 1.0 / len(matches) if ground_truth in matches else 0.0


def _fraction_equal(numbers: list[str], target: str) -> float:
    return 0.0 if not numbers else sum(n == target for n in numbers) / len(numbers)


def count_longbench(prediction: str, ground_truth: str, **_) -> float:
    """LongBench count_score: the fraction of the numbers in the prediction that equal the answer."""
    return _fraction_equal(re.findall(r"\d+", prediction), str(ground_truth))


def retrieval_longbench(prediction: str, ground_truth: str, **_) -> float:
    """LongBench retrieval_score: the fraction of the numbers in the prediction equal to 'Paragraph N''s N."""
    found = re.findall(r"Paragraph (\d+)", ground_truth)
    if not found:
        raise ValueError(f"passage_retrieval answer {ground_truth!r} has no 'Paragraph <n>'")
    return _fraction_equal(re.findall(r"\d+", prediction), found[0])


# metric name (as recorded) and function, per English subset (LongBench eval.py dataset2metric)
SUBSET_METRIC: dict[str, tuple[str, Callable[..., float]]] = {
    "narrativeqa": ("qa_f1", qa_f1_longbench),
    "qasper": ("qa_f1", qa_f1_longbench),
    "multifieldqa_en": ("qa_f1", qa_f1_longbench),
    "hotpotqa": ("qa_f1", qa_f1_longbench),
    "2wikimqa": ("qa_f1", qa_f1_longbench),
    "musique": ("qa_f1", qa_f1_longbench),
    "gov_report": ("rouge_l", rouge_l_longbench),
    "qmsum": ("rouge_l", rouge_l_longbench),
    "multi_news": ("rouge_l", rouge_l_longbench),
    "trec": ("classification", classification_longbench),
    "triviaqa": ("qa_f1", qa_f1_longbench),
    "samsum": ("rouge_l", rouge_l_longbench),
    "passage_count": ("count", count_longbench),
    "passage_retrieval_en": ("retrieval", retrieval_longbench),
    "lcc": ("code_sim", code_sim_longbench),
    "repobench-p": ("code_sim", code_sim_longbench),
}

# eval.py scores only the first line of the prediction for these few-shot subsets
FIRST_LINE_SUBSETS = ("trec", "triviaqa", "samsum", "lsht")


def postprocess(subset: str, prediction: str) -> str:
    """eval.py: for trec/triviaqa/samsum/lsht keep the first line (after leading newlines)."""
    if subset in FIRST_LINE_SUBSETS:
        return prediction.lstrip("\n").split("\n")[0]
    return prediction


def score_example(subset: str, prediction: str, answers: Sequence[str], all_classes=None) -> float:
    """One example's score in [0, 1]: post-process, then the max over ground truths (eval.py scorer)."""
    if subset not in SUBSET_METRIC:
        raise KeyError(f"no LongBench metric for subset {subset!r}; known: {', '.join(SUBSET_METRIC)}")
    fn = SUBSET_METRIC[subset][1]
    prediction = postprocess(subset, prediction)
    best = 0.0
    for truth in answers:
        best = max(best, fn(prediction, truth, all_classes=all_classes))
    return best


def score_subset(scores: Sequence[float]) -> float:
    """eval.py `scorer`: round(100 × mean, 2)."""
    return round(100 * sum(scores) / len(scores), 2) if scores else float("nan")


for _subset, (_kind, _fn) in SUBSET_METRIC.items():
    register(_subset, f"LongBench {_subset}: {_kind} as LongBench metrics.py/eval.py, max over answers, 100 x mean",
             unit="x100")
register("rouge_l_f", "textbook ROUGE-L F on lower-cased words (as rouge-score, no stemming) vs the best answer, "
         "100 x mean; not LongBench's rouge_l (see llmlab.metrics.longbench)", unit="x100")
