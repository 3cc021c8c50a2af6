import pytest

from llmlab.context import RunContext
from llmlab.errors import UserError
from llmlab.methods.base import NoMethod
from llmlab.tasks.needle import Needle, rouge1_f


def _hay(lm, n_sentences=80):
    text = " ".join(f"Sentence number {i} talks about apples." for i in range(n_sentences))
    return lm.tokenizer(text, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("depth", [0, 50, 100])
def test_needle_placement_follows_sentence_boundaries(tiny_lm, depth):
    task = Needle(template="{context}\n{question}", chat=False)
    ids, point = task.build_prompt(tiny_lm, _hay(tiny_lm), 200, depth)
    text = tiny_lm.decode(ids)
    assert task.needle in text
    before = text.split(task.needle)[0].strip()
    if depth == 0:
        assert before == ""
    elif depth < 100:  # inside the context: never splits a sentence (at 100 it is appended, as the official code)
        assert before.endswith("apples.")
    if depth == 100:
        assert text.split(task.needle)[1].strip() == task.question.strip()


def test_length_buffer_reserves_tokens(tiny_lm):
    needle_len = len(tiny_lm.tokenizer(Needle.needle, add_special_tokens=False)["input_ids"])
    hay = _hay(tiny_lm)
    ids, _ = Needle(template="{context}", chat=False).build_prompt(tiny_lm, hay, 150, 50)
    ids_buf, _ = Needle(template="{context}", chat=False, length_buffer=40).build_prompt(tiny_lm, hay, 150, 50)
    assert abs(len(ids) - 150) <= 3 and abs(len(ids_buf) - 110) <= 3
    assert needle_len > 0


def test_rouge1_with_stemming():
    assert rouge1_f("eat a sandwich", "eating sandwiches") == pytest.approx(2 * (2 / 2) * (2 / 3) / (1 + 2 / 3))
    assert rouge1_f("anything", "") == 0.0


def test_grid_scores_heatmap_and_limit(tiny_lm, tmp_path):
    task = Needle(context_lengths=[40, 80], depths=[0, 100], max_new_tokens=3)
    scores = task.evaluate(tiny_lm, NoMethod(), RunContext(out_dir=tmp_path))
    assert len(scores.predictions) == 4
    assert set(scores.metrics) == {"rouge1_f", "rouge1_f@40", "rouge1_f@80", "needle_recall", "needle_recall@40",
                                   "needle_recall@80", "needle_found"}
    assert scores.info["summary"].startswith("needle found in ")
    assert (tmp_path / "needle_heatmap.png").exists()
    limited = task.evaluate(tiny_lm, NoMethod(), RunContext(out_dir=tmp_path, limit=3))
    assert len(limited.predictions) == 3


def test_an_answer_that_repeats_the_question_scores_rouge_but_no_needle_recall():
    from llmlab.tasks.needle import NEEDLE, QUESTION, needle_recall

    echo = "The best thing to do in San Francisco is to eat a burger."
    assert rouge1_f(NEEDLE, echo) > 0.5 and needle_recall(NEEDLE, QUESTION, echo) < 0.2
    assert needle_recall(NEEDLE, QUESTION, "Eat a sandwich and sit in Dolores Park on a sunny day.") == 1.0


def test_all_empty_predictions_warn(tiny_lm, tmp_path):
    eos = tiny_lm.tokenizer.eos_token
    task = Needle(context_lengths=[40], depths=[0, 100], max_new_tokens=0)
    scores = task.evaluate(tiny_lm, NoMethod(), RunContext(out_dir=tmp_path))
    assert all(p["prediction"] == "" for p in scores.predictions) and eos
    assert "every one of the 2 predictions is empty" in scores.info["warning"]


def test_missing_haystack_dir_is_a_clear_error(tiny_lm, tmp_path):
    with pytest.raises(UserError, match="haystack_dir"):
        Needle(haystack_dir=str(tmp_path / "nope")).haystack()
    (tmp_path / "essays").mkdir()
    (tmp_path / "essays" / "a.txt").write_text("An essay. About things.")
    assert "An essay." in Needle(haystack_dir=str(tmp_path / "essays")).haystack()
