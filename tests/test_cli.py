"""`llmlab` end to end in subprocesses on tiny-llama (offline, outputs in tmp)."""

import json
from pathlib import Path

from conftest import results_under, run_llmlab

TINY = ["model=tiny-llama", "task.context_lengths=[48,96]", "task.depths=[0,50]", "task.max_new_tokens=4"]


def test_run_end_to_end_records_everything(outputs):
    proc = run_llmlab(["run", *TINY, "logger=none"], outputs)
    [res] = results_under(outputs)
    job = Path(res["out_dir"])
    assert res["status"] == "complete" and res["choices"]["model"] == "tiny-llama"
    assert set(res["metrics"]) >= {"rouge1_f", "rouge1_f@48", "rouge1_f@96"}
    assert res["main_metric"] == "rouge1_f"
    assert res["config"]["task"]["context_lengths"] == [48, 96]
    assert res["packages"]["torch"] and res["timings_s"]["evaluate"] > 0 and res["memory"]["peak_rss_mib"] > 0
    assert len(res["signature"]) == 16
    preds = [json.loads(line) for line in (job / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 4 and {p["context_length"] for p in preds} == {48, 96}
    assert (job / "needle_heatmap.png").stat().st_size > 1000
    assert "results:" in proc.stdout and "rouge1_f" in proc.stdout

    # same config again: skipped, nothing overwritten; rerun=true recomputes the same scores
    again = run_llmlab(["run", *TINY, "logger=none"], outputs)
    assert "skipped" in again.stdout
    assert len(results_under(outputs)) == 1
    run_llmlab(["run", *TINY, "logger=none", "rerun=true"], outputs)
    first, second = results_under(outputs)
    assert first["metrics"] == second["metrics"]
    assert [json.loads(x)["prediction"] for x in (Path(second["out_dir"]) / "predictions.jsonl").read_text().splitlines()] \
        == [p["prediction"] for p in preds]


def test_wandb_offline_run(outputs, tmp_path):
    run_llmlab(["run", *TINY, "logger=wandb", f"logger.dir={tmp_path}/wb"], outputs, env={"WANDB_MODE": "offline"})
    runs = list((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    assert results_under(outputs)[0]["status"] == "complete"


def test_sweep_2x2_and_table(outputs):
    proc = run_llmlab(["run", "-m", "+experiment=needle_smollm2", "model=tiny-llama", "logger=none",
                       "task.context_lengths=[32],[64]", "seed=0,1", "task.depths=[50]", "task.max_new_tokens=3"],
                      outputs)
    assert "4 done, 0 skipped, 0 failed" in proc.stdout
    results = results_under(outputs)
    assert len(results) == 4 and {r["experiment_name"] for r in results} == {"needle_smollm2"}
    table = run_llmlab(["table", "needle_smollm2", "task.context_lengths=[32],[64]"], outputs)  # the grid as run
    row = [line for line in table.stdout.splitlines() if line.startswith("| tiny-llama")]
    assert len(row) == 1 and row[0].count("|") == 4  # model + two context-length columns
    assert "–" not in row[0]
    default = run_llmlab(["table", "needle_smollm2"], outputs)  # the experiment's own grid: its 4 lengths not run
    row = [line for line in default.stdout.splitlines() if line.startswith("| tiny-llama")]
    assert row[0].count("–") == 4 and "4 cells have no result yet" in default.stdout
    assert (outputs / "tables" / "needle_smollm2.csv").exists()


def test_ls_lists_groups_with_descriptions(outputs):
    proc = run_llmlab(["ls", "model"], outputs)
    assert "smollm2-135m" in proc.stdout and "SmolLM2" in proc.stdout and "tiny-llama" in proc.stdout
    bad = run_llmlab(["ls", "nosuchgroup"], outputs, check=False)
    assert bad.returncode == 2 and "Groups:" in bad.stderr


def test_unknown_choice_lists_valid_ones(outputs):
    proc = run_llmlab(["run", "method=nosuch", "logger=none"], outputs, check=False)
    assert proc.returncode != 0
    assert "nosuch" in proc.stderr and "none" in proc.stderr


def test_unavailable_hub_model_gives_a_short_message(outputs):
    proc = run_llmlab(["run", "model=hf", "model.path=nobody/no-such-model", "logger=none"], outputs, check=False,
                      env={"HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2
    assert "nobody/no-such-model" in proc.stderr and "model.path=" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(outputs.rglob("traceback.txt")) and list(outputs.rglob("failed.json"))


def test_shell_completion_through_the_run_subcommand(outputs):
    script = run_llmlab(["-sc", "install=bash"], outputs)
    assert "complete -o nospace -o default -F hydra_bash_completion llmlab" in script.stdout
    line = "llmlab run method=sn"
    proc = run_llmlab(["-sc", "query=bash"], outputs, env={"COMP_LINE": line, "COMP_POINT": str(len(line))})
    assert proc.stdout.split() == ["method=snapkv"]


def test_under_a_multi_process_launcher_only_rank_zero_records(llmlab_inproc, outputs, monkeypatch):
    """accelerate/torchrun set RANK/WORLD_SIZE: every rank prepares, rank 0 alone evaluates and writes."""
    from llmlab import distributed

    fast = ["model=tiny-llama", "task=needle", "task.context_lengths=[32]", "task.depths=[0]",
            "task.max_new_tokens=2", "task.heatmap=false", "logger=none"]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("RANK", "1")
    assert distributed.device_for("cuda") == "cuda:1" and distributed.device_for("cpu") == "cpu"
    code, out, _ = llmlab_inproc(*fast)
    assert code == 0 and "rank 1/2: prepare done" in out
    assert not list(outputs.rglob("results.json")) and not list(outputs.rglob("predictions.jsonl"))
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    code, out, _ = llmlab_inproc(*fast)
    assert code == 0 and len(list(outputs.rglob("results.json"))) == 1
