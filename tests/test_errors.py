"""Bad input gives one short paragraph a user can act on: what was wrong and what would be right.

Most cases run `llmlab run` in-process (cli.run, as the console script does, minus a fresh
interpreter per case); one runs the real command in a subprocess to check what reaches stderr.
"""

from __future__ import annotations


import pytest

from conftest import run_llmlab

FAST = ["model=tiny-llama", "method=none", "task.context_lengths=[32]", "task.depths=[0]", "task.max_new_tokens=2",
        "task.heatmap=false", "logger=none"]


@pytest.fixture
def llmlab_run(llmlab_inproc):
    """Call `llmlab run <args>` in-process; return (exit status, stderr)."""

    def call(*args: str) -> tuple[int, str]:
        code, _, err = llmlab_inproc(*args)
        return code, err

    return call


def one_paragraph(stderr: str) -> str:
    """The error paragraph: no traceback, no Hydra hint, at most the message plus a pointer to the traceback."""
    lines = [line for line in stderr.strip().splitlines() if line.startswith("llmlab:") or line.startswith("(traceback")]
    assert "Traceback" not in stderr and "HYDRA_FULL_ERROR=1 for a complete" not in stderr, stderr
    assert len(lines) in (1, 2) and lines[0].startswith("llmlab: "), stderr
    return " ".join(lines)


COMPOSITION_ERRORS = [  # (overrides, what the message must say); Hydra fails before any job starts
    (["method=nosuch"], ["unknown method 'nosuch'", "snapkv", "none", "llmlab ls method", "method=<choice>"]),
    (["+experiment=nosuch"], ["unknown experiment 'nosuch'", "needle_smollm2", "experiment=<choice>"]),
    (["-m", "hydra/launcher=nosuch", "seed=0,1"], ["unknown hydra/launcher 'nosuch'", "parallel", "slurm", "joblib",
                                                   "submitit_local"]),
    (["method=snapkv", "method.kv_sizee=64"], ["method.kv_sizee: there is no such setting",
                                               "kv_size, window_size, kernel_size, pooling", "+method.kv_sizee"]),
    (["task.depths=[0,"], ["could not parse the override 'task.depths=[0,'", "key=value"]),
    (["-m", "hydra/launcher=parallel", "hydra.launcher.n_jobs=two", "seed=0,1"],
     ["hydra.launcher.n_jobs='two' is not valid", "Integer"]),
    (["method=snapkv", "+method.kv_size=64"], ["method.kv_size already exists", "method.kv_size=<value>"]),
]


@pytest.mark.parametrize("overrides, says", COMPOSITION_ERRORS, ids=[" ".join(o) for o, _ in COMPOSITION_ERRORS])
def test_composition_errors_are_one_clear_paragraph(llmlab_run, outputs, overrides, says):
    code, stderr = llmlab_run(*overrides, "logger=none")
    assert code == 2
    text = one_paragraph(stderr)
    for phrase in says:
        assert phrase in text, (phrase, text)
    assert not list(outputs.rglob("*.json"))  # nothing ran


JOB_ERRORS = [  # (overrides, what the message must say); the job records failed.json + traceback
    (["seed=abc"], ["seed='abc' is not valid", "seed must be an integer", "seed=0"]),
    (["limit=0"], ["limit=0 is not valid", "positive integer", "limit=100"]),
    (["dtype=float99"], ["dtype='float99' is not valid", "float32, bfloat16, float16", "dtype=float32"]),
    (["rerun=maybe"], ["rerun='maybe' is not valid", "true or false"]),
    (["device=tpu"], ["device='tpu' is not valid", "cpu, cuda"]),
    (["seed=${nosuch}"], ["seed: its value could not be resolved", "nosuch"]),
    (["method=snapkv", "method.kv_size=abc"], ["method.kv_size='abc' is not valid",
                                               "SnapKV.kv_size expects an integer or null", "method.kv_size=128"]),
    (["method=snapkv", "method.window_size=1.5"], ["method.window_size=1.5", "expects an integer"]),
    (["task.depths=[a,b]"], ["task.depths=['a', 'b'] is not valid", "a list of numbers"]),
    (["method=snapkv", "+method.window=8"], ["method.window: SnapKV (conf/method/snapkv.yaml) has no field 'window'",
                                             "kv_size, window_size"]),
    (["task.haystack_dir=/nonexistent/haystack"], ["task.haystack_dir=/nonexistent/haystack", "haystack_dir=null"]),
    (["task=perplexity", "task.path=/nonexistent/text.txt"], ["task.path=/nonexistent/text.txt", "task.dataset="]),
    (["model=hf", "model.path=nobody/no-such-model"], ["nobody/no-such-model", "model.path="]),
    (["model=hf"], ["model=hf needs a hub id or local directory", "model.path=<id-or-dir>"]),
    (["task=zsre", "method=snapkv"], ["task zsre needs a method with knowledge editing", "snapkv",
                                      "Methods with knowledge editing: ft, ft_m", "method=<name>"]),
    (["task=longbench", "method=rome", "task.data_dir=/nonexistent"],
     ["task longbench cannot use rome's knowledge editing", "silently measure the unmodified model"]),
]


@pytest.mark.parametrize("overrides, says", JOB_ERRORS, ids=[" ".join(o) for o, _ in JOB_ERRORS])
def test_job_errors_are_one_clear_paragraph_with_the_traceback_in_the_log(llmlab_run, outputs, overrides, says):
    base = [o for o in FAST if not (o.startswith("task.") and any(x.startswith("task=") for x in overrides))]
    for group in ("model", "method"):
        if any(o.startswith(f"{group}=") for o in overrides):
            base = [o for o in base if not o.startswith(f"{group}=")]
    code, stderr = llmlab_run(*base, *overrides)
    assert code == 2
    text = one_paragraph(stderr)
    for phrase in says:
        assert phrase in text, (phrase, text)
    [failed] = list(outputs.rglob("failed.json"))
    job = failed.parent
    assert "Traceback (most recent call last)" in (job / "traceback.txt").read_text()
    assert "Traceback (most recent call last)" in (job / "job.log").read_text()
    assert not list(outputs.rglob("results.json"))


def test_cuda_requested_without_a_gpu(llmlab_run):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    code, stderr = llmlab_run(*FAST, "device=cuda")
    assert code == 2
    assert "device=cuda but torch sees no CUDA GPU" in one_paragraph(stderr) and "device=cpu" in stderr


def test_plus_on_a_run_setting_sets_it(llmlab_run, outputs, tmp_path):
    """`+rerun=true` works like `rerun=true` (config.yaml already has rerun: false)."""
    (tmp_path / "text.txt").write_text("The quick brown fox jumps over the lazy dog. " * 8)
    args = ["model=tiny-llama", "method=none", "logger=none", "task=perplexity", f"task.path={tmp_path / 'text.txt'}",
            "task.max_length=16", "task.stride=8", "task.max_tokens=48"]
    assert llmlab_run(*args)[0] == 0
    assert llmlab_run(*args)[0] == 0  # skipped
    assert llmlab_run(*args, "+rerun=true")[0] == 0
    assert len(list(outputs.rglob("results.json"))) == 2 and len(list(outputs.rglob("skipped.json"))) == 1


def test_the_real_command_prints_only_the_paragraph(outputs):
    proc = run_llmlab(["run", *[o for o in FAST if o != "method=none"], "method=snapkv", "method.kv_size=abc"], outputs,
                      check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[0] == ("llmlab: method.kv_size='abc' is not valid: SnapKV.kv_size expects "
                                                   "an integer or null (default 128). Set e.g. method.kv_size=128.")
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "Traceback" in next(outputs.rglob("job.log")).read_text()
