"""Few-shot arithmetic as the calibration-data paper's lib/eval.py scores it, with a safe eval."""

from __future__ import annotations

import json

import pytest

from llmlab.metrics.arithmetic import first_number, release_answer, same_value, value


def test_safe_value_matches_python_eval_on_arithmetic_and_refuses_code():
    for text in ("72", " 3.5 ", "( 76.0 - 25.0 )", "2 ** 3 - -1", "7 // 2", "1,000", "10 % 4"):
        assert value(text) == eval(text)  # noqa: S307 - the reference the release uses
    for text in ("__import__('os').system('true')", "[1, 2]", "x + 1", "72\nQuestion: what", "1 / 0", "9 ** 999999",
                 "", "True"):
        assert value(text) is None
    assert same_value("51", "( 76.0 - 25.0 )") and not same_value("51.5", "( 76.0 - 25.0 )")


def test_release_answer_parse():
    assert release_answer(" 18\n\nQuestion: next") == "18"
    assert release_answer(" She has 9 eggs. #### 18\n\nQuestion:") == "18"
    assert release_answer(" 18\nQuestion: next") == "18\nQuestion: next"  # no blank line: the release keeps it all
    assert first_number("about 1,250.5 dollars") == 1250.5 and first_number("none") is None


def write_data(tmp_path):
    rows = [{"question": f"Sam has {i} pens and gets {i} more. How many pens?", "answer": f"{i}+{i}={2 * i}\n#### {2 * i}"}
            for i in range(1, 7)]
    for name in ("train", "test"):
        (tmp_path / f"{name}.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (tmp_path / "SVAMP.json").write_text(json.dumps([{"Body": "Dan had 5 apples.", "Question": "He ate 2. How many left?",
                                                      "Equation": "( 5.0 - 2.0 )", "Answer": 3.0}]))
    (tmp_path / "mawps.csv").write_text("Question,Numbers,Equation,Answer\n"
                                        '"Ann has number0 cats and number1 dogs . How many pets ?",3.0 10.0,+ number0 number1,13.0\n')
    return tmp_path


def test_prompts_as_the_release(tmp_path):
    from llmlab.tasks.fewshot_math import FewShotMath

    d = write_data(tmp_path)
    t = FewShotMath(subset="gsm8k", path=str(d / "test.jsonl"), exemplars_path=str(d / "train.jsonl"))
    item = t.items(None, None)[4]
    assert item["prompt"].startswith("Question: Sam has 1 pens and gets 1 more. How many pens?\nAnswer: 2\n\n")
    assert item["prompt"].count("\n\n") == 3 and item["prompt"].endswith("How many pens?\nAnswer:")
    cot = FewShotMath(subset="gsm8k", path=str(d / "test.jsonl"), exemplars_path=str(d / "train.jsonl"), rationale=True)
    assert "Answer: 1+1=2 #### 2\n\n" in cot.items(None, None)[0]["prompt"]
    svamp = FewShotMath(subset="svamp", path=str(d / "SVAMP.json"), exemplars_path=str(d / "train.jsonl")).items(None, None)
    assert svamp[0]["question"] == "Dan had 5 apples. He ate 2. How many left?" and svamp[0]["gold"] == "( 5.0 - 2.0 )"
    mawps = FewShotMath(subset="mawps", path=str(d / "mawps.csv"), exemplars_path=str(d / "train.jsonl")).items(None, None)
    assert mawps[0]["question"] == "Ann has 3 cats and 10 dogs . How many pets ?" and mawps[0]["gold"] == "13"


def test_fewshot_math_end_to_end(tmp_path, llmlab_inproc, outputs):
    d = write_data(tmp_path)
    code, out, err = llmlab_inproc("method=none", "model=tiny-llama", "task=fewshot_math", f"task.path={d / 'test.jsonl'}",
                                   f"task.exemplars_path={d / 'train.jsonl'}", "task.max_new_tokens=8", "logger=none")
    assert code == 0, err
    res = json.loads(next(outputs.rglob("results.json")).read_text())
    assert res["main_metric"] == "gsm8k/exact_match_eval"
    assert set(res["metrics"]) == {"gsm8k/exact_match_eval", "gsm8k/exact_match_lenient", "gsm8k/answer_nll"}
    assert res["metrics"]["gsm8k/answer_nll"] > 0
    preds = [json.loads(l) for l in next(outputs.rglob("predictions.jsonl")).read_text().splitlines()]
    assert len(preds) == 6 and all("\n\n" not in p["output"] for p in preds)


def test_missing_files_are_refused_before_the_model(tmp_path, llmlab_inproc):
    code, out, err = llmlab_inproc("method=none", "model=tiny-llama", "task=fewshot_math", "logger=none")
    assert code != 0 and "task.path=None is not a file" in err
