"""task=lm_eval: lm-evaluation-harness in-process on the composed model. The metrics and per-document
log-likelihoods equal lm-eval's own run of the same weights loaded from disk; a pruned model is scored as
pruned; an inference-time method is refused; missing data and unknown task names are clear errors."""

from __future__ import annotations

import copy
import json

import pytest

from llmlab.context import RunContext
from llmlab.errors import CapabilityError, UserError
from llmlab.fixtures import fixture_path
from llmlab.methods.base import NoMethod
from llmlab.tasks.harness import LmEval


def _task(**kw) -> LmEval:
    reasoning = fixture_path("reasoning")
    data = {"esnli": fixture_path("esnli"), "gsm8k": f"{reasoning}/gsm8k/test.jsonl",
            "gsm8k_train": f"{reasoning}/gsm8k/train.jsonl"}
    task = LmEval(**{"tasks": ["esnli_local", "gsm8k_local"], "data": data, "batch_size": 4, **kw})
    task.check(NoMethod())
    return task


def _loglikelihoods(predictions, task="esnli_local"):
    return [[round(r[0], 4) for r in p["response"]] for p in predictions if p["task"] == task]


def test_in_process_equals_lm_eval_on_the_saved_model(tiny_lm, tmp_path):
    import lm_eval
    from lm_eval.tasks import TaskManager

    task = _task()
    scores = task.evaluate(tiny_lm, NoMethod(), RunContext(out_dir=tmp_path / "run", limit=3))
    m = scores.metrics
    assert set(m) >= {"esnli_local/acc,none", "esnli_local/acc_stderr,none", "gsm8k_local/exact_match,strict-match",
                      "gsm8k_local/exact_match,flexible-extract"}
    assert scores.main_metric == "esnli_local/acc,none"
    info = scores.info["tasks"]
    assert info["esnli_local"]["n_samples"] == {"original": 8, "effective": 3} and info["gsm8k_local"]["num_fewshot"] == 5
    assert len(info["esnli_local"]["config_hash"]) == 16 and scores.info["lm_eval_version"] == lm_eval.__version__
    assert len(scores.predictions) == 3 + 3 * 2  # e-SNLI 3 documents; GSM8K 3 documents x 2 filters
    shown = [p for p in scores.predictions if p["task"] == "esnli_local"][0]
    assert shown["prompt_tail"].endswith("True, False, or Neither?\nAnswer:") and shown["target"] in ("0", "1", "2")
    # the run's task directory has the local paths filled in, so lm-eval alone runs the same tasks
    written = (tmp_path / "run" / "lm_eval_tasks" / "esnli_local.yaml").read_text()
    assert "${data." not in written and fixture_path("esnli") in written

    saved = tmp_path / "model"
    tiny_lm.model.save_pretrained(saved)
    tiny_lm.tokenizer.save_pretrained(saved)
    own = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={saved},dtype=float32,device=cpu",
                                  tasks=["esnli_local", "gsm8k_local"], limit=3, batch_size=4, log_samples=True,
                                  task_manager=TaskManager(include_path=str(tmp_path / "run" / "lm_eval_tasks"),
                                                           include_defaults=False))
    for name, value in own["results"]["esnli_local"].items():
        if isinstance(value, float):
            assert m[f"esnli_local/{name}"] == pytest.approx(value, abs=1e-9)
    theirs = [LmEval.sample_row("esnli_local", s) for s in own["samples"]["esnli_local"]]
    assert _loglikelihoods(scores.predictions) == _loglikelihoods(theirs)
    assert [p["response"] for p in scores.predictions if p["task"] == "gsm8k_local"] == \
        [LmEval.sample_row("gsm8k_local", s)["response"] for s in own["samples"]["gsm8k_local"]]


def test_scores_the_weights_prepare_left(tiny_lm, tmp_path):
    from llmlab.methods.pruning.magnitude import Magnitude

    class Ctx:
        seed = 0

    pruned = copy.copy(tiny_lm)
    pruned.model = copy.deepcopy(tiny_lm.model)
    pruned = Magnitude(cache=False).prepare(pruned, Ctx())
    dense = _task(tasks=["esnli_local"]).evaluate(tiny_lm, NoMethod(), RunContext(out_dir=tmp_path / "d", limit=2))
    sparse = _task(tasks=["esnli_local"]).evaluate(pruned, NoMethod(), RunContext(out_dir=tmp_path / "s", limit=2))
    assert _loglikelihoods(dense.predictions) != _loglikelihoods(sparse.predictions)


def test_refuses_inference_time_methods_and_bad_input():
    from llmlab.methods.kv.dynamickv import DynamicKV

    with pytest.raises(CapabilityError, match="task lm_eval cannot use dynamickv's KV-cache compression"):
        _task().check(DynamicKV())
    with pytest.raises(UserError, match=r"reads \$\{data.esnli\}, and no path is set.*task.data.esnli=<path>"):
        LmEval(tasks=["esnli_local"]).check(NoMethod())
    train = f"{fixture_path('reasoning')}/gsm8k/train.jsonl"
    with pytest.raises(UserError, match=r"task.data.gsm8k=/nowhere/test.jsonl does not exist"):
        LmEval(tasks=["gsm8k_local"], data={"gsm8k": "/nowhere/test.jsonl", "gsm8k_train": train}).check(NoMethod())
    with pytest.raises(UserError, match=r"no task YAML for hellaswag.*Known here: bbh_local \(27 tasks\), esnli_local, gsm8k_local.*builtin=true"):
        LmEval(tasks=["hellaswag"]).check(NoMethod())


def test_llmlab_run_lm_eval_end_to_end(llmlab_inproc, outputs):
    code, out, err = llmlab_inproc("method=magnitude", "method.cache=false", "model=tiny-llama", "task=lm_eval",
                                   "task.tasks=[esnli_local]", "task.data.esnli=${fixture:esnli}", "limit=2", "logger=none")
    assert code == 0, err[-2000:]
    result = json.loads(next(outputs.rglob("results.json")).read_text())
    assert result["metrics"]["esnli_local/acc,none"] in (0.0, 0.5, 1.0)
    assert result["metric_info"]["esnli_local/acc,none"]["higher_is_better"] is True
    assert result["method_info"]["sparsity"] == pytest.approx(0.5, abs=0.01)


def test_bbh_local_runs_lm_evals_own_prompts_on_the_release_files(llmlab_inproc, outputs):
    """bbh_local: lm-eval's zero-shot BBH tasks (their prompts, filters and exact match, included from the installed
    package) on the release's <task>.json files; the group's aggregate is lm-eval's."""
    code, out, err = llmlab_inproc("method=none", "model=tiny-llama", "task=lm_eval", "task.tasks=[bbh_local]",
                                   "task.data.bbh=${fixture:bbh}", "limit=1", "logger=none")
    assert code == 0, err[-3000:]
    result = json.loads(next(outputs.rglob("results.json")).read_text())
    assert "bbh_local/exact_match,flexible-extract" in result["metrics"]
    assert "bbh_local_navigate/exact_match,strict-match" in result["metrics"]
    assert len(result["info"]["tasks"]) >= 27
    preds = [json.loads(l) for l in next(outputs.rglob("predictions.jsonl")).read_text().splitlines()]
    assert any(p["prompt_tail"].endswith("Q: Is a circle round?\nOptions:\n- Yes\n- No\nA:") for p in preds)


def test_bbh_local_without_its_data_fails_before_loading(llmlab_inproc):
    code, out, err = llmlab_inproc("method=none", "model=tiny-llama", "task=lm_eval", "task.tasks=[bbh_local]",
                                   "logger=none")
    assert code == 2 and "data.bbh" in err
