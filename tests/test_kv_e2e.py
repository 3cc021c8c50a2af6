"""End to end: every KV press through `llmlab run ... task=needle` on the tiny llama (one sweep)."""

from __future__ import annotations

from conftest import results_under, run_llmlab

PRESSES = ["fullkv", "streamingllm", "h2o", "snapkv", "pyramidkv", "dynamickv"]


def test_every_press_runs_needle_end_to_end(outputs):
    run_llmlab(["run", "-m", f"method={','.join(PRESSES)}", "model=tiny-llama", "task=needle", "logger=none",
                "task.context_lengths=[320]", "task.depths=[50]", "task.max_new_tokens=3",
                "task.heatmap=false"], outputs)
    results = results_under(outputs)
    by_method = {r["choices"]["method"]: r for r in results}
    assert set(by_method) == set(PRESSES)
    for name, r in by_method.items():
        held = r["method_info"]["kv_fraction_held"]
        if name == "fullkv":
            assert held == 1.0
        else:
            assert 0 < held < 0.6, (name, held)  # kv_size 128 (the YAML default) of a ~340-token prompt
        assert r["method_info"]["kv_bytes_mean"] <= r["method_info"]["kv_bytes_full_mean"]
        assert r["method_info"]["prompts"] == 1
