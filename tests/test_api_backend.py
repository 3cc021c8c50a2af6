"""`model=api` against a real OpenAI-compatible HTTP server on the loopback interface (started here,
answering with canned translations): the task runs, the key never reaches the results, and a re-run
asks nothing (every answer from the on-disk cache)."""

from __future__ import annotations

import json

import pytest

from llmlab.fixtures import fixture_path
from llmlab.models.echo_server import EchoServer


@pytest.fixture
def server():
    s = EchoServer()
    yield s
    s.close()


def test_translation_through_the_api_backend_then_all_from_the_cache(server, llmlab_inproc, outputs, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMLAB_TEST_KEY", "sk-secret-value")
    mt = fixture_path("mt")
    args = ["task=translation", "method=tsp", "model=api", f"model.base_url={server.url}", "model.model=served-model",
            "model.api_key_env=LLMLAB_TEST_KEY", f"model.cache_dir={tmp_path / 'cache'}",
            f"task.data_dir={mt}/data/multilingual_translation", "task.direction=deen", "logger=none"]
    code, out, err = llmlab_inproc(*args)
    assert code == 0, err
    assert server.requests == 3 and server.auth == {"Bearer sk-secret-value"}
    first = json.loads(next(outputs.rglob("results.json")).read_text())
    assert first["runtime"]["model_usage"] == {"requests": 3, "cache_hits": 0}
    assert first["metrics"]["bleu"] >= 0 and "sk-secret-value" not in json.dumps(first)
    code, out, err = llmlab_inproc(*args, "rerun=true")
    assert code == 0, err
    assert server.requests == 3  # the second pass sent nothing
    runs = sorted(outputs.rglob("results.json"), key=lambda p: p.stat().st_mtime)
    assert json.loads(runs[-1].read_text())["runtime"]["model_usage"] == {"requests": 0, "cache_hits": 3}


def test_an_api_model_is_refused_by_a_task_that_reads_logits(llmlab_inproc):
    code, out, err = llmlab_inproc("task=perplexity", "method=none", "model=api", "model.base_url=http://127.0.0.1:9/v1",
                                   "model.model=x", "logger=none")
    assert code == 2 and "reads the model's logits" in err


def test_instruct_llm_judge_score_through_a_real_endpoint(llmlab_inproc, outputs, tmp_path):
    """ATKD's judge score (gpt4_evalution.py + get_gpt4_score.py) against a loopback server playing the judge:
    the release's prompt is sent, reviews are parsed as the release does, unparsable ones skipped, and each set's
    score is sum(model) / sum(reference)."""
    from llmlab.tasks.instruct import JUDGE_SYSTEM

    def review(body):
        user = body["messages"][-1]["content"]
        return "I cannot judge this." if "\\Assistant 2: " not in user or len(user) % 5 == 0 else \
            "Assistant 1: 3\nAssistant 2: 6"

    judge = EchoServer(answer=review)
    try:
        data = fixture_path("instruct")
        code, out, err = llmlab_inproc(
            "task=instruct", f"task.data_dir={data}", "task.max_new_tokens=3", "model=tiny-llama", "method=none",
            "limit=2", "logger=none",
            f"+task.judge={{source: api, name: judge, base_url: '{judge.url}', model: judge-model, "
            f"cache_dir: '{tmp_path / 'cache'}'}}")
        assert code == 0, err
    finally:
        judge.close()
    results = json.loads(next(outputs.rglob("results.json")).read_text())
    preds = [json.loads(l) for l in next(outputs.rglob("predictions.jsonl")).read_text().splitlines()]
    usage = results["info"]["judge"]["usage"]
    assert judge.requests == usage["requests"] and usage["requests"] + usage["cache_hits"] == len(preds) > 0
    first = judge.bodies[0]["messages"]
    assert first[0] == {"role": "system", "content": JUDGE_SYSTEM} and first[1]["content"].startswith("Question: Human:")
    assert judge.bodies[0]["max_tokens"] == 64 and judge.bodies[0]["temperature"] == 0.0
    skipped = sum(p["judge_scores"] is None for p in preds)
    assert results["info"]["judge"]["skipped_reviews"] == skipped
    judged_sets = {p["set"] for p in preds if p["judge_scores"]}
    assert judged_sets and all(results["metrics"][f"{s}/judge_ratio"] == 0.5 for s in judged_sets)


def test_a_model_that_answers_after_a_newline_gets_its_first_line_with_text(llmlab_inproc, outputs, tmp_path):
    """A base model often starts with a newline: stopping there would score an empty line. The task asks
    again without the stop for those sentences and keeps the first line with text (task.answer=first_line
    keeps the empty line)."""
    server = EchoServer(answer=lambda body: "\n" + body["messages"][-1]["content"].rsplit(": ", 1)[-1].upper()
                        + "\nNote: this is a translation.")
    try:
        mt = fixture_path("mt")
        args = ["task=translation", "method=none", "model=api", f"model.base_url={server.url}", "model.model=base-model",
                f"model.cache_dir={tmp_path / 'cache'}", f"task.data_dir={mt}/data/multilingual_translation",
                "task.direction=deen", "logger=none"]
        code, out, err = llmlab_inproc(*args)
        assert code == 0, err
        assert server.requests == 6  # 3 stopped at the leading newline, then 3 without the stop
        assert [b.get("stop") for b in server.bodies] == [["\n"]] * 3 + [None] * 3
        run = next(outputs.rglob("results.json")).parent
        preds = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
        assert [p["prediction"] for p in preds] == [p["source"].upper() for p in preds]
        assert all(p["after_newline"] for p in preds)
        assert json.loads((run / "results.json").read_text())["info"]["answers_after_newline"] == 3
        code, out, err = llmlab_inproc(*args, "task.answer=first_line")
        assert code == 0, err
        run = max(outputs.rglob("results.json"), key=lambda p: p.stat().st_mtime).parent
        assert {json.loads(line)["prediction"] for line in (run / "predictions.jsonl").read_text().splitlines()} == {""}
    finally:
        server.close()
