"""Few-shot NLI as the calibration-data paper's lib/eval.py scores it: the release's exemplars and prompt
layout, its answer parse, exact label match, and `llmlab run` on e-SNLI and RTE files in the release layouts."""

from __future__ import annotations

import json

import pytest

from llmlab.errors import UserError
from llmlab.fixtures import fixture_path
from llmlab.tasks.fewshot_nli import FewShotNLI


def test_prompt_is_the_release_template_then_the_pair():
    task = FewShotNLI(subset="esnli", path=fixture_path("esnli"))
    task.check_data()
    items = task.items(None, None)
    prompt = items[0]["prompt"]
    blocks = prompt.split("\n\n")
    assert len(blocks) == 10 and [b.rsplit("Label: ", 1)[1] for b in blocks[:3]] == ["neutral", "contradiction",
                                                                                        "entailment"]
    assert blocks[0].startswith("Premise: A person on a horse jumps over a broken down airplane.\t\nHypothesis:")
    assert blocks[-1] == f"Premise: {items[0]['premise']}\nHypothesis: {items[0]['hypothesis']}\nLabel:"
    assert len(items) == 8 and {it["gold"] for it in items} == {"entailment", "neutral", "contradiction"}
    rte = FewShotNLI(subset="rte", path=fixture_path("glue"))
    rte.check_data()
    head = rte.items(None, None)[0]["prompt"].split("\n\n")
    assert len(head) == 4 and head[0].endswith("Label: not entailment")
    assert {it["gold"] for it in rte.items(None, None)} == {"entailment", "not entailment"}


def test_answer_parse_follows_the_release():
    plain = FewShotNLI(subset="esnli")
    assert plain.answer(" neutral\n\nPremise: next") == "neutral"
    assert plain.answer(" neutral\nPremise: next") == "neutral\nPremise: next"  # no blank line: kept whole, wrong
    cot = FewShotNLI(subset="esnli", rationale=True)
    assert cot.answer(" a dog is an animal. So the answer is entailment.\n\nPremise:") == "entailment"
    assert cot.answer(" no sentence end") == ""


def test_bad_input_is_refused_before_loading(tmp_path):
    with pytest.raises(UserError, match=r"has no s1.test.*e-SNLI release directory"):
        FewShotNLI(subset="esnli", path=str(tmp_path)).check_data()
    with pytest.raises(UserError, match="rte has none"):
        FewShotNLI(subset="rte", rationale=True, path=str(tmp_path)).check_data()
    with pytest.raises(UserError, match="fewshot_nli has esnli, rte, anli_r1, anli_r2, anli_r3"):
        FewShotNLI(subset="mnli").check_data()


def test_llmlab_run_scores_label_match(llmlab_inproc, outputs):
    code, out, err = llmlab_inproc("method=none", "model=tiny-llama", "task=esnli_fewshot", "task.path=${fixture:esnli}",
                                   "task.max_new_tokens=4", "limit=4", "logger=none")
    assert code == 0, err[-2000:]
    path = next(outputs.rglob("results.json"))
    result = json.loads(path.read_text())
    preds = [json.loads(line) for line in (path.parent / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 4
    share = 100.0 * sum(p["answer"] == p["gold"] for p in preds) / 4
    assert result["metrics"]["esnli/label_match"] == share and result["metrics"]["esnli/label_nll"] > 0
    assert result["metric_info"]["esnli/label_nll"]["higher_is_better"] is False
