"""`method=kd` end to end on tiny models: a truncated student learns from the full teacher (the KD loss
falls), the teacher runs once per batch, every step is logged, the on-policy and mixed sample sources train on
generated sequences, and a bad objective fails before loading."""

from __future__ import annotations

import json

import pytest

from llmlab.fixtures import fixture_path


def test_kd_trains_the_student_toward_the_teacher_and_logs_every_step(llmlab_inproc, outputs):
    data = fixture_path("instruct")
    code, out, err = llmlab_inproc("method=kd", "model=tiny-llama", "scale=smoke", "task=instruct",
                                   f"task.data_dir={data}", "task.max_new_tokens=4", f"method.train_path={data}/train.jsonl",
                                   "method.objective=forward", "+model.keep_layers=1", "method.epochs=10", "+method.cache_trained=false",
                                   "method.batch_size=1", "method.lr=0.01", "logger=none")
    assert code == 0, err
    results = json.loads(next(outputs.rglob("results.json")).read_text())
    info = results["method_info"]
    assert info["steps"] == 30 and info["teacher_forwards"] == 30 and info["student_layers"] == 1
    assert info["teacher_layers"] == 4 and info["student_params"] < info["teacher_params"]
    assert 0.0 < info["teacher_unc"] < 1.0   # the teacher's mean 1 - p_gold over the trained tokens
    assert info["loss_last"] < 0.8 * info["loss_first"]  # the same pair seen 10 times: the KL to the teacher falls
    rows = [l.split(",") for l in next(outputs.rglob("train_log.csv")).read_text().splitlines()[1:]]
    assert {r[2] for r in rows} == {"loss", "lr"} and len(rows) == 60
    assert set(results["metrics"]) >= {"dolly/rougeL", "wizardlm/rougeL", "average", "dolly/ref_nll", "ref_nll"}


def test_an_unknown_objective_fails_before_any_model_loads(llmlab_inproc):
    code, out, err = llmlab_inproc("method=kd", "model=tiny-llama", "scale=smoke", "task=instruct",
                                   f"task.data_dir={fixture_path('instruct')}", "method.objective=kl",
                                   f"method.train_path={fixture_path('instruct')}/train.jsonl", "logger=none")
    assert code == 2 and "objective='kl' is not one of" in err


@pytest.mark.parametrize("source", ["student", "mix_token", "mix_request"])
def test_on_policy_and_mixed_sample_sources_train_on_generated_sequences(source, llmlab_inproc, outputs):
    data = fixture_path("instruct")
    code, out, err = llmlab_inproc("method=kd", "model=tiny-llama", "scale=smoke", "task=instruct",
                                   f"task.data_dir={data}", "task.max_new_tokens=2", f"method.train_path={data}/train.jsonl",
                                   "method.objective=atkd", "+model.keep_layers=1", "method.epochs=4", "+method.cache_trained=false",
                                   "method.batch_size=2", f"method.sample_source={source}", "method.max_new_tokens=6",
                                   "limit=1", "logger=none")
    assert code == 0, err
    info = json.loads(next(outputs.rglob("results.json")).read_text())["method_info"]
    assert info["sample_source"] == source and info["teacher_forwards"] == info["steps"] > 0
    if source == "mix_request":   # a coin per batch: some batches sampled, the others gold
        assert 0 < info["sampled_batches"] < info["steps"] or info["steps"] < 4
    else:
        assert info["sampled_batches"] == info["steps"]
    assert info["loss_last"] == info["loss_last"]   # finite, not NaN


def test_mix_token_needs_a_teacher(llmlab_inproc):
    code, out, err = llmlab_inproc("method=kd", "model=tiny-llama", "scale=smoke", "task=instruct",
                                   f"task.data_dir={fixture_path('instruct')}", "method.objective=sft",
                                   "method.sample_source=mix_token",
                                   f"method.train_path={fixture_path('instruct')}/train.jsonl", "logger=none")
    assert code == 2 and "mix_token" in err


def test_a_second_task_reuses_the_trained_student(llmlab_inproc, outputs, tmp_path, monkeypatch):
    data = fixture_path("instruct")
    monkeypatch.setenv("LLMLAB_CACHE", str(tmp_path / "cache"))   # an empty cache: the first run trains
    args = ("method=kd", "model=tiny-llama", "scale=smoke", f"task.data_dir={data}", "task.max_new_tokens=2",
            f"method.train_path={data}/train.jsonl", "method.objective=forward", "+model.keep_layers=1",
            "method.epochs=3", "method.batch_size=1", "method.lr=0.005", "limit=1", "logger=none")
    for tag, task in (("a", "instruct"), ("b", "instruct")):
        code, out, err = llmlab_inproc(f"task={task}", *args, f"output_root={outputs / tag}",
                                       *(("rerun=true",) if tag == "b" else ()))
        assert code == 0, err
    first, second = (json.loads(next((outputs / t).rglob("results.json")).read_text()) for t in ("a", "b"))
    assert first["method_info"]["reused"] is False and first["method_info"]["teacher_forwards"] == first["method_info"]["steps"] > 0
    assert second["method_info"]["reused"] is True and second["method_info"]["steps"] == first["method_info"]["steps"]
    assert second["metrics"]["ref_nll"] == first["metrics"]["ref_nll"]   # the same weights, evaluated again


def test_training_data_reads_seed_tasks_jsonl_and_a_json_list(tmp_path):
    from llmlab.methods.distill.kd import alpaca_rows
    from llmlab.data.instruct import prompt_for

    seed = tmp_path / "seed.jsonl"
    seed.write_text(json.dumps({"instruction": "Add.", "instances": [{"input": "1+1", "output": "2"},
                                                                     {"input": "", "output": "0"}]}) + "\n\n")
    alpaca = tmp_path / "alpaca_gpt4_data.json"  # the release's training file: one JSON list, indented
    alpaca.write_text(json.dumps([{"instruction": "Greet.", "input": "", "output": "Hello."},
                                  {"instruction": "Echo.", "input": "x", "output": "x"}], indent=2))
    assert alpaca_rows(seed) == [(prompt_for("Add.", "1+1"), "2"), (prompt_for("Add.", ""), "0")]
    assert alpaca_rows(alpaca) == [(prompt_for("Greet.", ""), "Hello."), (prompt_for("Echo.", "x"), "x")]
