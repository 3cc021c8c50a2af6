import pytest

from llmlab.metrics.text import exact_match, lcs_length, normalize_answer, rouge_l_f, rouge_n_f, token_f1


def test_normalize_answer():
    assert normalize_answer("The  Eiffel-Tower, in PARIS!") == "eiffeltower in paris"


def test_exact_match():
    assert exact_match("the Paris.", "Paris") == 1.0
    assert exact_match("Paris, France", "Paris") == 0.0


def test_token_f1_hand_computed():
    # pred tokens: paris france (2); ref: paris (1): overlap 1 -> P 1/2, R 1 -> F1 2/3
    assert token_f1("Paris France", "paris") == pytest.approx(2 / 3)
    assert token_f1("", "paris") == 0.0
    # repeated tokens count once per occurrence: pred "a b b", ref "b b c" -> overlap 2, P 2/3, R 2/3
    assert token_f1("x y y", "y y z") == pytest.approx(2 / 3)


def test_rouge1_hand_computed():
    # pred: the cat sat (3), ref: the cat ran away (4); overlap 2 -> P 2/3, R 1/2 -> F 4/7
    assert rouge_n_f("The cat sat", "the cat ran away", 1) == pytest.approx(4 / 7)
    assert rouge_n_f("dog", "cat", 1) == 0.0


def test_rouge_l_hand_computed():
    assert lcs_length(list("abcbdab"), list("bdcaba")) == 4
    # pred: a b c d (4), ref: a c d e f (5); LCS a c d = 3 -> P 3/4, R 3/5 -> F 2/3
    assert rouge_l_f("a b c d", "a c d e f") == pytest.approx(2 * 0.75 * 0.6 / 1.35)


def test_rouge1_stemmed_matches_rouge_score_package():
    import json
    import subprocess
    import sys

    from llmlab.metrics.text import rouge1_f_stemmed

    pairs = [("The best thing to do in San Francisco is eat a sandwich and sit in Dolores Park on a sunny day.",
              "Eating sandwiches in Dolores Park, sitting on sunny days!"),
             ("running runners ran", "the runner runs"), ("a", "b"), ("Caf\u00e9 42 costs", "cafe 42 costing")]
    # rouge-score is imported in a child process: its absl logging would close pytest's capture streams
    code = ("import json,sys; from rouge_score import rouge_scorer; s = rouge_scorer.RougeScorer(['rouge1'], use_stemmer=True); "
            "print(json.dumps([s.score(r, p)['rouge1'].fmeasure for r, p in json.loads(sys.argv[1])]))")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(pairs)], capture_output=True, text=True, check=True)
    expected = json.loads(out.stdout)
    assert [rouge1_f_stemmed(p, r) for r, p in pairs] == pytest.approx(expected)
