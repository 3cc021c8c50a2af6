"""ANLI, BoolQ, CommonsenseQA, RACE and WinoGrande as the calibration-data paper's lib/eval.py scores them:
the release layouts and the hub's field names read alike, the release's prompt layout and parse, the errors
before any model loads, `llmlab run` end to end, and the same sets as calibration sources."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from llmlab.data import qa_sets
from llmlab.data.calibration import Calibration, task_examples, windows
from llmlab.errors import UserError
from llmlab.fixtures import fixture_path
from llmlab.tasks.fewshot_nli import FewShotNLI
from llmlab.tasks.fewshot_qa import FewShotQA


def _fx(name: str) -> str:
    return str(Path(fixture_path("qa")) / name)


def test_release_layouts_render_the_release_prompts():
    anli = qa_sets.examples("anli_r1", _fx("anli"), "test")
    assert anli[0] == {**anli[0], "answer": "neutral", "prompt": "Premise: A river runs through the old town, crossed by "
                       "three stone bridges.\nHypothesis: The river floods every spring.\nLabel: "}
    assert anli[0]["cot"].endswith("Label: Floods are not mentioned. So the answer is neutral.")
    assert len(qa_sets.examples("anli_r3", _fx("anli"), "test")) == 5
    boolq = qa_sets.examples("boolq", _fx("boolq"), "test")[0]
    # passage and question joined with nothing between, as lib/data.py get_boolq does; str(bool) as the gold
    assert boolq == {"prompt": "Question: Copper is a metal that conducts electricity well and is used in wires.is "
                               "copper a poor conductor\nAnswer: ", "answer": "False"}
    csqa = qa_sets.examples("commonsense_qa", _fx("commonsense_qa"), "test")[0]
    assert csqa["prompt"] == ("Question: What do you need to see at night?\nChoices:\nA. noise\nB. light\nC. water\n"
                              "D. salt\nE. wind\nAnswer: ") and csqa["answer"] == "B"
    race = qa_sets.examples("race", _fx("race"), "test")
    assert len(race) == 3 and race[0]["prompt"].startswith("Article: Mia found an old map")
    assert race[0]["prompt"].endswith("\nQuestion: Where did Mia find the map?\nOptions:\nA. in a shop\nB. in her attic\n"
                                      "C. at school\nD. by the lake\n\nAnswer: ")  # each option line ends in \n
    wino = qa_sets.examples("winogrande", _fx("winogrande"), "test")[0]
    assert wino == {"prompt": "Sentence: The glass broke when it hit the floor because the _ was fragile.\nOptions:\n"
                              "1. glass\n2. floor\nAnswer: ", "answer": "1"}


def test_hub_field_names_read_the_same(tmp_path):
    """A `datasets` export (the hub's fields) renders exactly as the release's own layout."""
    anli = [json.loads(line) for line in Path(_fx("anli"), "R1", "test.jsonl").read_text().splitlines()]
    hub_anli = [{"uid": r["uid"], "premise": r["context"], "hypothesis": r["hypothesis"], "reason": r["reason"],
                 "label": "enc".index(r["label"])} for r in anli]
    (tmp_path / "anli.jsonl").write_text("".join(json.dumps(r) + "\n" for r in hub_anli))
    assert qa_sets.examples("anli_r1", tmp_path / "anli.jsonl", "test") == qa_sets.examples("anli_r1", _fx("anli"), "test")
    csqa = [json.loads(line) for line in Path(_fx("commonsense_qa"), "dev_rand_split.jsonl").read_text().splitlines()]
    hub_csqa = [{"id": r["id"], "question": r["question"]["stem"], "answerKey": r["answerKey"],
                 "choices": {"label": [c["label"] for c in r["question"]["choices"]],
                             "text": [c["text"] for c in r["question"]["choices"]]}} for r in csqa]
    (tmp_path / "csqa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in hub_csqa))
    assert qa_sets.examples("commonsense_qa", tmp_path / "csqa.jsonl", "test") == \
        qa_sets.examples("commonsense_qa", _fx("commonsense_qa"), "test")
    race = qa_sets.examples("race", _fx("race"), "test")
    docs = [json.loads(p.read_text()) for p in sorted(Path(_fx("race"), "test").glob("*/*.txt"))]
    hub_race = [{"article": d["article"], "question": q, "options": o, "answer": a}
                for d in docs for q, o, a in zip(d["questions"], d["options"], d["answers"])]
    (tmp_path / "race.jsonl").write_text("".join(json.dumps(r) + "\n" for r in hub_race))
    assert qa_sets.examples("race", tmp_path / "race.jsonl", "test") == race


def test_prompt_is_the_release_template_then_the_item():
    for subset, n_items, last_line in (("boolq", 4, "Answer:"), ("commonsense_qa", 4, "Answer:"),
                                       ("race", 3, "Answer:"), ("winogrande", 4, "Answer:")):
        task = FewShotQA(subset=subset, path=_fx(subset))
        task.check_data()
        items = task.items(None, None)
        assert len(items) == n_items
        blocks = items[0]["prompt"].split("\n\n")
        assert items[0]["prompt"].endswith(last_line)  # the release .strip()s the formatted template
        assert blocks[0].startswith({"boolq": "Question: Persian", "commonsense_qa": "Question: Sammy",
                                     "race": "Article: Last week", "winogrande": "Sentence: We can know"}[subset])
    boolq_head = FewShotQA(subset="boolq").exemplars().split("\n\n")
    assert [b.rsplit("\n", 1)[1] for b in boolq_head] == ["Label: true", "Label: true", "Label: false"]
    race_head = FewShotQA(subset="race").exemplars().split("\n\n")
    assert [b[-9:] for b in race_head] == ["Answer: C", "Answer: C", "Answer: D"] and "Options: \nChoices:" in race_head[2]
    anli = FewShotNLI(subset="anli_r1", path=_fx("anli"))
    anli.check_data()
    head = anli.items(None, None)[0]["prompt"].split("\n\n")
    assert len(head) == 10 and head[0].endswith("Label: contradiction") and head[-1].endswith("\nLabel:")
    cot = FewShotNLI(subset="anli_r3", path=_fx("anli"), rationale=True).exemplars().split("\n\n")
    assert len(cot) == 9 and cot[-1].endswith("So the answer is neutral.")


def test_answer_parse_and_comparison_follow_the_release():
    task = FewShotQA(subset="commonsense_qa")
    assert task.answer(" B\nQuestion: next") == "B" and task.correct("b", "B")
    assert not task.correct("B. populated areas", "B")             # the paper's column: exact (case-insensitive)
    assert task.lenient(" B. populated areas", "B") and not task.lenient(" Because", "B")
    boolq = FewShotQA(subset="boolq")
    assert boolq.correct("true", "True") and not boolq.correct("yes", "True")
    assert FewShotQA(subset="winogrande").answer("\n2") == ""          # an empty first line is a wrong answer


def test_bad_input_is_refused_before_loading(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(UserError, match=r"boolq: no local copy given \(task.path=null\).*boolean-questions"):
        FewShotQA(subset="boolq").check_data()
    with pytest.raises(UserError, match=r"race: task.path=.* has no test .*RACE release directory"):
        FewShotQA(subset="race", path=str(tmp_path)).check_data()
    with pytest.raises(UserError, match="fewshot_qa has boolq, commonsense_qa, race, winogrande"):
        FewShotQA(subset="piqa").check_data()
    with pytest.raises(UserError, match="rte has none"):
        FewShotNLI(subset="rte", rationale=True).check_data()
    with pytest.raises(UserError, match=r"anli: no local copy given \(calibration.path=null\)"):
        Calibration(source="anli").check()
    with pytest.raises(UserError, match=r"calibration=c4 with no local copy"):
        Calibration(source="c4").check()
    (tmp_path / "dev.jsonl").write_text("not json\n")
    with pytest.raises(UserError, match="not a JSON-lines file"):
        qa_sets.examples("winogrande", tmp_path, "test")
    assert os.environ["HF_DATASETS_OFFLINE"] == "1"


@pytest.mark.parametrize("source", ["anli", "commonsense_qa", "race", "winogrande"])
def test_calibration_reads_the_release_layouts(source):
    from llmlab.models.tiny import tiny_tokenizer

    c = Calibration(source=source, path=_fx(source), nsamples=3, seqlen=48)
    c.check()
    examples = task_examples(c)
    assert examples == qa_sets.examples(source, _fx(source), "train") and len(examples) >= 3
    got = windows(c, tiny_tokenizer())
    assert len(got) == 3 and all(ids.shape == (1, 48) for ids, _ in got)


def test_llmlab_run_scores_answer_match(llmlab_inproc, outputs):
    code, out, err = llmlab_inproc("method=none", "model=tiny-llama", "task=race_fewshot",
                                   "task.path=${fixture:qa}/race", "task.max_new_tokens=3", "logger=none")
    assert code == 0, err[-2000:]
    path = next(outputs.rglob("results.json"))
    result = json.loads(path.read_text())
    preds = [json.loads(line) for line in (path.parent / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 3 and {p["gold"] for p in preds} == {"A", "B"}
    share = 100.0 * sum(p["output"].split("\n")[0].strip().lower() == p["gold"].lower() for p in preds) / 3
    assert result["metrics"]["race/answer_match"] == share and result["metrics"]["race/label_nll"] > 0
