import math

import torch

from llmlab.context import RunContext
from llmlab.methods.base import NoMethod
from llmlab.tasks.perplexity import Perplexity


def _direct_nll(lm, ids):
    with torch.no_grad():
        logits = lm.model(input_ids=torch.tensor([ids])).logits[0, :-1]
    return torch.nn.functional.cross_entropy(logits, torch.tensor(ids[1:]), reduction="mean").item()


def test_single_window_equals_direct_computation(tiny_lm, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("The quick brown fox jumps over the lazy dog. " * 6)
    task = Perplexity(path=str(text), max_length=512, stride=512)
    scores = task.evaluate(tiny_lm, NoMethod(), RunContext(out_dir=tmp_path))
    ids = tiny_lm.tokenizer(text.read_text(), add_special_tokens=False)["input_ids"]
    assert scores.metrics["scored_tokens"] == len(ids) - 1
    assert math.isclose(scores.metrics["nll_per_token"], _direct_nll(tiny_lm, ids), rel_tol=1e-4)
    assert math.isclose(scores.metrics["perplexity"], math.exp(scores.metrics["nll_per_token"]), rel_tol=1e-9)


def test_sliding_window_scores_every_token_once(tiny_lm, tmp_path):
    (tmp_path / "a.txt").write_text("alpha beta gamma delta " * 20)
    (tmp_path / "b.txt").write_text("one two three four five " * 20)
    task = Perplexity(path=str(tmp_path), max_length=32, stride=16)
    scores = task.evaluate(tiny_lm, NoMethod(), RunContext(out_dir=tmp_path))
    text, _ = task.text()
    n = len(tiny_lm.tokenizer(text, add_special_tokens=False)["input_ids"])
    assert scores.metrics["scored_tokens"] == n - 1
    assert sum(p["scored_tokens"] for p in scores.predictions) == n - 1
    assert all(p["window_end"] - p["window_start"] <= 32 for p in scores.predictions)
