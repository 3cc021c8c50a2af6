"""Reason-KE: chain and prompt builders, answer parsing, retrieval with distractors, SFT on tiny-llama, cache."""

import json

import pytest

from llmlab.context import RunContext
from llmlab.data import reason_ke as data
from llmlab.errors import UserError
from llmlab.capabilities import EditRequest
from llmlab.data.mquake import parse_cases
from llmlab.fixtures import mquake as mquake_fixture
from llmlab.methods.editing.reason_ke import ReasonKE


CASES = [mquake_fixture.case(i) for i in range(3)]  # generated MQuAKE-format cases (subjects "Roblin Park 0", ...)
PARSED = parse_cases(CASES)


@pytest.fixture(scope="module")
def encoder():
    from llmlab import models
    from llmlab.models.sentence import SentenceEncoder

    return SentenceEncoder(models.load({"source": "tiny", "kind": "encoder"}))


def test_prompt_and_chain_formats(encoder):
    pool = data.pool_of_cases(PARSED, encoder)
    assert pool.new_of["Roblin Park 0 is located in the country of Canada"] == \
        "Roblin Park 0 is located in the country of Australia"
    [ex] = data.training_examples(PARSED[:1], pool, seed=0)  # k = 1 (seed 0 draws < 0.9)
    assert ex["k"] == 1
    facts = ex["prompt"].split("[Updated Information]:\n")[1].split("\n\n[Query]:")[0]
    assert ex["prompt"] == ("Please acknowledge the updated information provided below and respond to the subsequent "
                            f"query.\n\n[Updated Information]:\n{facts}\n\n[Query]:\n{CASES[0]['questions'][0]}")
    chain = data.build_chain("Q?", ["Roblin Park is located in the country of Australia", "D is in E"],
                             {"Roblin Park is located in the country of Australia"},
                             [("Roblin Park is located in the country of", "Australia"),
                              ("The capital of Australia is", "Canberra")], "Canberra")
    lines = chain.split("\n")
    assert lines[0].startswith("1.**Acknowledge Updated Information**") and "D is in E" in lines[0]
    assert lines[1].startswith("2.**Determine Relevance**") and '"D is in E" is not relevant' in lines[1]
    assert lines[2] == ("3.**Apply Updated Information or Ignore**: Apply: Roblin Park is located in the country of "
                        "Australia. Ignore: D is in E.")
    assert lines[3] == ("4.**Reasoning**: Roblin Park is located in the country of Australia. The capital of "
                        "Australia is Canberra. Therefore, the answer is Canberra.")
    assert chain.endswith("\n\n[Answer]:\nCanberra") and data.parse_answer(chain) == "Canberra"


def test_k_distribution_and_external_chains(tmp_path):
    import random

    rng = random.Random(0)
    ks = [data.sample_k(rng) for _ in range(4000)]
    assert 0.87 < ks.count(1) / 4000 < 0.93 and set(ks) == {1, 2, 3}
    path = tmp_path / "chains.json"
    path.write_text(json.dumps([{"case_id": 7, "questions": ["Q1?"], "tok_fact": "A is B",
                                 "reasoning_answer": "1.**Acknowledge...**\n\n[Answer]:\nB"}]))
    [ex] = data.read_chains(path)
    assert ex["prompt"] == data.reason_prompt("A is B", "Q1?") and ex["answer"].endswith("B")
    path.write_text("[{}]")
    with pytest.raises(UserError, match="reasoning_answer"):
        data.read_chains(path)


def test_answer_parsing():
    assert data.parse_answer("... reasoning\n\n[Answer]:\nParis\n\nmore") == "Paris"
    assert data.parse_answer("**[Answer]**: Paris") == "Paris"
    assert data.parse_answer("[Answer]: A\n[Answer]:  \n Tokyo ") == "Tokyo"
    assert data.parse_answer("no marker") == ""


def _requests(cases, with_answer=False):
    return [EditRequest(prompt=rw["prompt"].format(rw["subject"]), subject=rw["subject"],
                        target_new=rw["target_new"]["str"], target_true=rw["target_true"]["str"],
                        extra={"case_id": c["case_id"], **({"new_answer": c["new_answer"]} if with_answer else {})})
            for c in cases for rw in c["requested_rewrite"]]


def test_distractors_and_leaked_answer(encoder):
    editor = ReasonKE(train=False, distractors=2)
    editor._encoder = encoder
    editor.prepare_demonstrations(None, _requests(CASES))
    own = _requests(CASES[:1])
    facts = editor.facts_for(own, "Q?")
    assert len(facts) == 3 and set(facts) <= {f"{r.prompt} {r.target_new}" for r in _requests(CASES)}
    prompt = editor.prompt_for(None, "Q?", own)
    assert prompt == data.reason_prompt(". ".join(facts), "Q?")
    with pytest.raises(UserError, match="new_answer"):
        _leak(encoder).facts_for(own, "Q?")
    assert _leak(encoder).facts_for(_requests(CASES[:1], True), "Q?")[-1] == "Q? Canberra"


def _leak(encoder):
    editor = ReasonKE(train=False, leak_answer=True)
    editor._encoder = encoder
    return editor


def test_training_lowers_loss_and_is_cached(tmp_path, monkeypatch, encoder):
    from llmlab.models import load
    from llmlab.training.trainers import answer_loss

    monkeypatch.setenv("LLMLAB_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "MQuAKE-CF.json"
    path.write_text(json.dumps(CASES))
    spec = {"name": "tiny-llama", "source": "tiny", "arch": "llama", "chat": True}

    def editor():
        e = ReasonKE(train_path=str(path), sft=dict(max_steps=3, batch_size=3, learning_rate=3e-3, max_length=256))
        e._encoder = encoder
        return e

    lm = load(spec)
    examples = editor().training_data(0)
    before = answer_loss(lm, examples)
    ctx = RunContext(out_dir=tmp_path / "run1")
    first = editor()
    first.prepare(lm, ctx)
    assert answer_loss(lm, examples) < before and first.report()["cached"] is False
    steps = (tmp_path / "run1" / "train_log.csv").read_text().splitlines()
    assert steps[0] == "stage,step,name,value" and any(",loss," in row for row in steps[1:])
    assert (tmp_path / "run1" / "reason_ke_loss.png").exists()
    ctx2 = RunContext(out_dir=tmp_path / "run2")
    lm2 = load(spec)
    e2 = editor()
    e2.prepare(lm2, ctx2)
    assert e2.report()["cached"] is True
    assert answer_loss(lm2, examples) == pytest.approx(answer_loss(lm, examples))
    e2.max_new_tokens = 20
    e2.prepare_demonstrations(lm2, _requests(CASES))
    with e2.edit(lm2, _requests(CASES[:1])):
        out = e2.answers(lm2, [CASES[0]["questions"][0]])[0]
    assert isinstance(out.text, str) and out.output  # generated a chain (random tiny model: any text)


@pytest.mark.parametrize("output,official,lenient", [
    ("4.**Reasoning**: ... \n\n[Answer]:  \nCanberra", "Canberra", "Canberra"),
    ("[Answer]:  \nCanberra\n\n*Note: the capital", "Canberra", "Canberra"),
    ("**[Answer]:**  \nCanberra, Australia\nmore", "Canberra, Australia", "Canberra, Australia"),
    ("**[Answer]**:Canberra", "Canberra", "Canberra"),
    ("[Answer]:\nCanberra", "", "Canberra"),            # no two spaces: the official reader finds no marker
    ("[Answer]: Canberra", "", "Canberra"),
    ("The answer is Canberra.", "", ""),
    ("[Answer]:  \n\n**Canberra**", "**Canberra**", "Canberra"),
])
def test_answers_are_read_as_the_official_evaluation_and_leniently(output, official, lenient):
    assert data.extract_answer(output) == official
    assert data.parse_answer(output) == lenient


def test_official_match_is_exact_and_case_sensitive(tiny_lm, tmp_path):
    """multihop/exact: the extracted string equals new_answer or an alias exactly (eval_rasoning.py)."""
    from llmlab.capabilities import Answer, OwnAnswering
    from llmlab.methods.editing.base import InContextEditor
    from llmlab.tasks.mquake import MQuAKE

    outputs = {"[Answer]:  \ncanberra": False, "[Answer]:  \nCANBERRA": True, "[Answer]:  \nCanberra.": False}

    class Fixed(InContextEditor, OwnAnswering):
        name = "fixed"

        def answers(self, lm, questions, requests):
            return [Answer(text=data.extract_answer(o), output=o, lenient=data.parse_answer(o)) for o in self.out]

    path = tmp_path / "m.json"
    path.write_text(json.dumps(CASES[:1]))
    for output, exact in outputs.items():
        editor = Fixed()
        editor.out = [output] * 5  # 2 single hops + 3 questions
        scores = MQuAKE(data_path=str(path), max_new_tokens=2).evaluate(tiny_lm, editor, RunContext(out_dir=tmp_path))
        assert scores.metrics["multihop/exact"] == float(exact), output
        assert scores.metrics["multihop/fewshot_em"] == 1.0  # the lenient, normalized reading accepts all three
