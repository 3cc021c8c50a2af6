"""OOP benchmark: the pass@k estimator, the sandbox against hostile samples (real child processes),
the official programs and keyword points on generated problems, and the task end to end on replay."""

from __future__ import annotations

import json
import os
import socket
import threading
from math import comb
from pathlib import Path

import pytest

from llmlab.errors import UserError
from llmlab.execution.passk import mean_pass_at_k, pass_at_k
from llmlab.execution.sandbox import Limits, live_processes, run_sample, run_samples
from llmlab.fixtures import fixture_path
from llmlab.tasks.oop import OOP, extract_code, read_problems

FAST = Limits(timeout=1.0, memory_mb=512)


def test_pass_at_k_is_the_combinatorial_definition():
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k), abs=1e-12)
    # as the official harness: a k that some problem has fewer samples for is not reported
    assert mean_pass_at_k([3, 2], [1, 2], [1, 2, 3]) == pytest.approx({1: (1 / 3 + 1) / 2, 2: (2 / 3 + 1) / 2})


def _listener():
    """A real server on the loopback interface: a sample that could reach the network would connect."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    threading.Thread(target=lambda: server.accept(), daemon=True).start()
    return server


def test_hostile_samples_fail_alone_and_the_harness_keeps_running(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMLAB_TEST_SECRET", "hunter2")
    server = _listener()
    port = server.getsockname()[1]
    outside = tmp_path / "written_by_sample"
    hostile = {
        "infinite loop": "while True: pass",
        "alarm swallowed": "while True:\n    try:\n        while True: pass\n    except BaseException: pass",
        "fork bomb": "import posix\nwhile True:\n    try: posix.fork()\n    except OSError: pass",
        "10 GiB allocation": "x = bytearray(10 * 1024 ** 3)",
        "os.system": f"import os\nos.system('touch {outside}')",
        "write outside its dir": f"open({str(outside)!r}, 'w').write('x')",
        "environment secret": "import os\nassert os.environ['LLMLAB_TEST_SECRET'] == 'hunter2'",
        "connect to 127.0.0.1": f"import _socket\ns = _socket.socket()\ns.connect(('127.0.0.1', {port}))",
    }
    names = list(hostile)
    outcomes = run_samples([[hostile[n]] for n in names] + [["open('own.txt', 'w').write('ok')\nassert 1 + 1 == 2"]],
                           FAST, workers=2)
    verdicts = dict(zip(names + ["honest"], (o.verdicts[0] for o in outcomes)))
    assert all(not v.startswith("passed") for n, v in verdicts.items() if n != "honest"), verdicts
    assert verdicts["honest"] == "passed", verdicts
    assert verdicts["infinite loop"] == verdicts["alarm swallowed"] == "timed out"
    assert "MemoryError" in verdicts["10 GiB allocation"]
    assert not outside.exists()
    server.close()
    if os.geteuid() == 0:  # no process of a worker uid survives its sample (the fork bomb's children included)
        assert not live_processes(FAST.base_uid) and not live_processes(FAST.base_uid + 1)
    assert run_sample(["assert sum(range(4)) == 6"], FAST).verdicts == ["passed"]


def test_official_programs_count_keyword_points_only_for_pass_o():
    directory = Path(fixture_path("oop"))
    problems = read_problems(directory / "example" / "oop_problem.jsonl")
    completions = {}
    for line in (directory / "example" / "result.jsonl").read_text().splitlines():
        row = json.loads(line)
        completions.setdefault(row["task_id"], []).append(row["completion"])
    p = problems[0]
    good, unkeyed, wrong = completions[p.task_id]
    runs = run_samples([[c + "\n" + p.test_program, f"str_content = {c!r}\n" + p.match_program]
                        for c in (good, unkeyed, wrong)], FAST)
    assert [o.passed for o in runs] == [[True, True], [True, False], [False, True]]


def test_extract_code_takes_the_first_fenced_block_or_the_whole_answer():
    assert extract_code("Sure:\n```python\nclass A:\n    pass\n```\nand\n```python\nprint(1)\n```") == "class A:\n    pass\n"
    assert extract_code("class A:\n    pass\n") == "class A:\n    pass\n"
    assert extract_code("```\n```python\nclass B:\n    x = 1\n```\n") == "class B:\n    x = 1\n"  # empty fence first
    assert extract_code("Here:\n```python\nclass C:\n    y = 2") == "class C:\n    y = 2\n"          # cut before its fence


def test_bad_settings_and_missing_files_are_one_paragraph_errors(tmp_path):
    with pytest.raises(UserError, match="n_samples >= 2"):
        OOP(data_path="x", n_samples=1, ks=[1, 2])
    with pytest.raises(UserError, match="does not exist"):
        OOP(data_path=str(tmp_path / "nope.jsonl")).check_data()
    (tmp_path / "bad.jsonl").write_text('{"task_id": "OOP/0"}\n')
    with pytest.raises(UserError, match="known format"):
        OOP(data_path=str(tmp_path / "bad.jsonl")).check_data()


def test_task_end_to_end_on_replayed_completions(llmlab_inproc, outputs):
    directory = fixture_path("oop")
    code, out, err = llmlab_inproc("task=oop", "method=none", "model=replay", f"model.path={directory}/example/result.jsonl",
                                   f"task.data_path={directory}/data/oop_data_all.jsonl", "task.n_samples=3",
                                   "task.ks=[1,2]", "logger=none")
    assert code == 0, err
    results = json.loads(next(outputs.rglob("results.json")).read_text())
    m = results["metrics"]
    assert m["pass@1"] == pytest.approx(200 / 3) and m["pass_o@1"] == pytest.approx(100 / 3)
    assert m["pass_o@2"] == pytest.approx(200 / 3) and m["keyword_match"] == pytest.approx(200 / 3)
    assert {"simple/pass@1", "moderate/pass_o@2", "difficult/pass@2"} <= set(m)
    assert results["info"]["difficulty_known"] == 4
    preds = [json.loads(l) for l in next(outputs.rglob("predictions.jsonl")).read_text().splitlines()]
    assert preds[0]["keywords"] == [True, False, True] and preds[0]["passed"] == 2 and preds[0]["passed_o"] == 1


def test_humaneval_and_mbpp_format_files_run_on_the_same_harness(tmp_path, llmlab_inproc, outputs):
    he = {"task_id": "HumanEval/0", "prompt": "def add(a, b):\n    \"\"\"Sum of a and b.\"\"\"\n",
          "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n", "entry_point": "add"}
    mbpp = {"task_id": 7, "text": "Write a function to double x.", "test_list": ["assert double(4) == 8"],
            "test_setup_code": ""}
    (tmp_path / "he.jsonl").write_text(json.dumps(he) + "\n")
    (tmp_path / "mbpp.jsonl").write_text(json.dumps(mbpp) + "\n")
    (tmp_path / "he_out.jsonl").write_text("".join(json.dumps({"task_id": "HumanEval/0", "completion": c}) + "\n"
                                                   for c in ("    return a + b\n", "    return a - b\n")))
    (tmp_path / "mbpp_out.jsonl").write_text(json.dumps({"task_id": 7, "completion": "def double(x):\n    return 2 * x\n"}) + "\n")
    for data, done, n, expected in (("he", "he_out", 2, 50.0), ("mbpp", "mbpp_out", 1, 100.0)):
        code, out, err = llmlab_inproc("task=oop", "method=none", "model=replay", f"model.path={tmp_path / done}.jsonl",
                                       f"task.data_path={tmp_path / data}.jsonl", f"task.n_samples={n}", "task.ks=[1]",
                                       "logger=none", f"output_root={outputs / data}")
        assert code == 0, err
        metrics = json.loads(next((outputs / data).rglob("results.json")).read_text())["metrics"]
        assert metrics["pass@1"] == pytest.approx(expected) and "pass_o@1" not in metrics and "keyword_match" not in metrics
