"""LongBench task and metrics: loader, prompts, middle truncation, LongBench's scoring, end to end.

Fixtures are tiny LongBench-format jsonl files written here (no real data is read).
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import results_under, run_llmlab
from llmlab.context import RunContext
from llmlab.errors import UserError
from llmlab.metrics import longbench as lbm
from llmlab.methods.base import NoMethod
from llmlab.metrics.text import rouge_l_f
from llmlab.tasks import longbench as lb

TREC_CLASSES = ["Abbreviation", "Animal", "Description", "Human being", "Location", "Numeric value"]


def make_record(subset: str, i: int) -> dict:
    """One LongBench-format record (keys as the THUDM/LongBench jsonl files) with a subset-shaped answer."""
    context = " ".join(f"Passage {k}: the river {k} flows north past town {k}." for k in range(1, 6 + i))
    answers = {
        "trec": ["Location"],
        "passage_count": [str(3 + i)],
        "passage_retrieval_en": [f"Paragraph {2 + i}"],
        "lcc": ["    return x + 1"],
        "repobench-p": ["y = helper(x)"],
    }.get(subset, [f"town {i + 1}", f"the town number {i + 1}"])
    return {
        "input": "" if subset in ("multi_news", "gov_report", "lcc") else f"Which town is record {i}?",
        "context": context,
        "answers": answers,
        "length": len(context.split()),
        "dataset": subset,
        "language": "en",
        "all_classes": TREC_CLASSES if subset == "trec" else None,
        "_id": f"{subset}-{i:04d}",
    }


def write_fixture_dir(root: Path, subsets=lb.ENGLISH_SUBSETS, n: int = 3, nested: bool = False) -> Path:
    """A directory of LongBench jsonl files (`<subset>.jsonl`, or `data/<subset>.jsonl` when nested)."""
    folder = root / "data" if nested else root
    folder.mkdir(parents=True, exist_ok=True)
    for subset in subsets:
        lines = [json.dumps(make_record(subset, i)) for i in range(n)]
        (folder / f"{subset}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


# ---------------------------------------------------------------------------------------------- data


def test_loader_reads_fixture_and_honours_limit(tmp_path):
    root = write_fixture_dir(tmp_path / "lb", subsets=["hotpotqa", "trec"], n=4)
    recs = lb.read_jsonl(root / "hotpotqa.jsonl")
    assert [r["_id"] for r in recs] == [f"hotpotqa-{i:04d}" for i in range(4)]
    assert lb.read_jsonl(root / "hotpotqa.jsonl", limit=2) == recs[:2]
    task = lb.LongBench(subsets=["trec"], data_dir=str(root))
    trec = task.load("trec", limit=3)
    assert len(trec) == 3 and trec[0]["all_classes"] == TREC_CLASSES
    # the layout of LongBench's data.zip (data/<subset>.jsonl) is found too
    nested = write_fixture_dir(tmp_path / "zip", subsets=["qasper"], n=1, nested=True)
    assert lb.find_subset_file(nested, "qasper") == nested / "data" / "qasper.jsonl"


def test_malformed_record_names_file_line_and_key(tmp_path):
    good = json.dumps(make_record("qasper", 0))
    bad = make_record("qasper", 1)
    del bad["answers"]
    path = tmp_path / "qasper.jsonl"
    path.write_text(good + "\n\n" + json.dumps(bad) + "\n")
    with pytest.raises(UserError) as err:
        lb.read_jsonl(path)
    assert f"{path}:3" in str(err.value) and "'answers'" in str(err.value)

    wrong_type = make_record("qasper", 1) | {"answers": "town 2"}
    path.write_text(good + "\n" + json.dumps(wrong_type) + "\n")
    with pytest.raises(UserError, match=r"qasper.jsonl:2: key 'answers' must be a non-empty list"):
        lb.read_jsonl(path)

    path.write_text(good + "\n{not json\n")
    with pytest.raises(UserError, match=r"qasper.jsonl:2: not valid JSON"):
        lb.read_jsonl(path)


def test_missing_data_is_a_user_error_not_fake_data(tmp_path, monkeypatch):
    task = lb.LongBench(subsets=["qasper"])
    with pytest.raises(UserError) as err:
        task.load("qasper")
    assert "task.data_dir=" in str(err.value) and "task.source=hub" in str(err.value)
    with pytest.raises(UserError, match="no file at"):
        lb.LongBench(subsets=["qasper"], data_dir=str(tmp_path)).load("qasper")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(UserError, match="HF_DATASETS_OFFLINE"):
        lb.LongBench(subsets=["qasper"], source="hub").load("qasper")
    with pytest.raises(UserError, match="unknown LongBench subset"):
        lb.LongBench(subsets=["dureader"])
    with pytest.raises(UserError, match="task.chat"):
        lb.LongBench(chat="maybe")


def test_config_dir_overrides_templates(tmp_path):
    (tmp_path / "dataset2prompt.json").write_text(json.dumps({"trec": "Q: {input} C: {context}", "vcsum": "x"}))
    (tmp_path / "dataset2maxlen.json").write_text(json.dumps({"trec": 7}))
    task = lb.LongBench(subsets=["trec"], config_dir=str(tmp_path))
    assert task.prompt("trec", {"input": "i", "context": "c"}) == "Q: i C: c"
    assert task.maxlens["trec"] == 7 and task.maxlens["qasper"] == 128 and "vcsum" not in task.prompts


# ---------------------------------------------------------------------------------------------- prompts


def test_prompt_templates_match_longbench():
    task = lb.LongBench()
    assert set(lb.DATASET2PROMPT) == set(lb.DATASET2MAXLEN) == set(lb.ENGLISH_SUBSETS) and len(lb.ENGLISH_SUBSETS) == 16
    rec = {"context": "CTX", "input": "INP"}
    assert task.prompt("multi_news", rec) == (
        "You are given several news passages. Write a one-page summary of all news. \n\nNews:\nCTX\n\n"
        "Now, write a one-page summary of all the news.\n\nSummary:")
    assert task.prompt("trec", rec) == (
        "Please determine the type of the question below. Here are some examples of questions.\n\nCTX\nINP")
    assert task.prompt("repobench-p", rec) == "Please complete the code given below. \nCTXINPNext line of code:\n"
    assert task.prompt("hotpotqa", rec).endswith("\n\nQuestion: INP\nAnswer:")
    assert "asconcisely" in task.prompt("narrativeqa", rec)  # the official template's typo is kept
    # braces inside the data are not format fields
    assert task.prompt("lcc", {"context": "def f(): return {'a': 1}\n", "input": ""}).count("{'a': 1}") == 1
    assert [lb.DATASET2MAXLEN[s] for s in ("multi_news", "hotpotqa", "trec", "samsum", "lcc")] == [512, 32, 64, 128, 64]


def test_truncate_middle_exact():
    ids = list(range(10))
    assert lb.truncate_middle(ids, 10) == (ids, [])
    assert lb.truncate_middle(ids, 6) == ([0, 1, 2], [7, 8, 9])
    assert lb.truncate_middle(ids, 7) == ([0, 1, 2], [7, 8, 9])  # int(7/2) = 3 from each end, as pred.py
    assert lb.truncate_middle(ids, 2) == ([0], [9])
    with pytest.raises(UserError):
        lb.truncate_middle(ids, 1)


def test_build_input_ids_truncates_and_applies_chat(tiny_lm):
    tok = tiny_lm.tokenizer
    prompt = " ".join(f"word{k}" for k in range(400))
    full = tok(prompt, add_special_tokens=True)["input_ids"]
    assert len(full) > 100
    ids, cut = lb.build_input_ids(tiny_lm, prompt, "qasper", 100, chat=False)
    assert cut and abs(len(ids) - 100) <= 3  # decode + re-tokenize at the junction may move a token or two
    assert tok.decode(ids).startswith(tok.decode(full[:40])) and tok.decode(ids).endswith(tok.decode(full[-40:]))
    assert lb.build_input_ids(tiny_lm, "short prompt", "qasper", 100) == (tok("short prompt")["input_ids"], False)
    chat_ids, _ = lb.build_input_ids(tiny_lm, "short prompt", "qasper", 100, chat=True)
    assert tok.decode(chat_ids).startswith("<|user|>short prompt")
    # few-shot and code subsets stay plain under chat=true (LongBench pred.py)
    assert lb.build_input_ids(tiny_lm, "short prompt", "trec", 100, chat=True)[0] == tok("short prompt")["input_ids"]
    inst, _ = lb.build_input_ids(tiny_lm, "short prompt", "trec", 100, chat="inst")
    assert tok.decode(inst) == "[INST] short prompt [/INST]"


# ---------------------------------------------------------------------------------------------- metrics


def test_qa_f1_and_first_line_postprocessing():
    # "the" and punctuation go; {cat, sat} vs {cat, sat, down}: P=1, R=2/3, F1=0.8
    assert lbm.qa_f1_longbench("The cat sat.", "a cat sat down") == pytest.approx(0.8)
    assert lbm.qa_f1_longbench("", "x") == 0.0
    pred = "\nParis\nQuestion: what is the capital of Italy?\nAnswer: Rome"
    assert lbm.score_example("triviaqa", pred, ["Paris"]) == 1.0  # first line only
    assert lbm.score_example("hotpotqa", pred, ["Paris"]) < 0.3  # whole prediction
    assert lbm.score_example("hotpotqa", "Rome", ["Paris", "Rome"]) == 1.0  # max over ground truths
    assert lbm.score_subset([1.0, 0.5, 0.0]) == 50.0 and lbm.score_subset([1 / 3]) == 33.33


def test_rouge_l_longbench_hand_cases():
    # sentences split on '.', union of per-pair LCS words: {a,c} from "a b c", {d} from "d e";
    # m = |{a,c,d}| = 3, n = |{a,b,c,d,e}| = 5, R = 1, P = 3/5, F = 0.75
    assert lbm.rouge_l_longbench("a b c. d e", "a c d") == pytest.approx(0.75, abs=1e-6)
    # distinct-word counting: the `rouge` package scores a repeated pair as perfect, plain ROUGE-L does not
    assert lbm.rouge_l_longbench("the cat the cat", "the cat") == pytest.approx(1.0, abs=1e-6)
    assert rouge_l_f("the cat the cat", "the cat") == pytest.approx(2 / 3)
    # case-sensitive words, punctuation kept (except '.', the sentence separator)
    assert lbm.rouge_l_longbench("Cat sat", "cat sat") == pytest.approx(2 * 0.5 * 0.5 / (1 + 1e-8))
    assert lbm.rouge_l_longbench("cat, sat", "cat sat") == pytest.approx(2 * 0.5 * 0.5 / (1 + 1e-8))
    # no sentence at all (empty, or only dots) scores 0, as LongBench's try/except
    assert lbm.rouge_l_longbench("", "a b") == 0.0 and lbm.rouge_l_longbench("...", "a b") == 0.0
    assert lbm.rouge_l_longbench("x y z", "a b") == 0.0


def test_code_sim_classification_count_retrieval():
    # first line without '#', '`' or '//'; difflib ratio 2·9/20 = 0.9
    assert lbm.code_sim_longbench("\n# comment\n```\nx = foo(1)\nmore", "x = foo(2)") == pytest.approx(0.90)
    assert lbm.code_sim_longbench("# only comments\n// here", "x = 1") == 0.0
    assert lbm.code_sim_longbench("x = 1", "x = 1") == 1.0
    assert lbm.fuzz_ratio("abcd", "abce") == 75 and lbm.fuzz_ratio("", "") == 100
    assert lbm.classification_longbench("Location", "Location", all_classes=TREC_CLASSES) == 1.0
    assert lbm.classification_longbench("Human being or Location", "Location", all_classes=TREC_CLASSES) == 0.5
    assert lbm.classification_longbench("no idea", "Location", all_classes=TREC_CLASSES) == 0.0
    # LongBench's in-loop removal: "ab" is removed, which skips "a"; ["abc", "a"] remain -> 1/2
    assert lbm.classification_longbench("abc", "abc", all_classes=["abc", "ab", "a", "x"]) == 0.5
    assert lbm.count_longbench("There are 3 paragraphs; 3 unique.", "3") == 1.0
    assert lbm.count_longbench("3 or 4", "3") == 0.5 and lbm.count_longbench("none", "3") == 0.0
    assert lbm.retrieval_longbench("Paragraph 12", "Paragraph 12") == 1.0
    assert lbm.retrieval_longbench("Paragraph 1 or Paragraph 12", "Paragraph 12") == 0.5
    assert lbm.score_example("trec", "Location\nAnimal", ["Location"], TREC_CLASSES) == 1.0  # first line only
    assert {s: m for s, (m, _) in lbm.SUBSET_METRIC.items()}["lcc"] == "code_sim"


# ---------------------------------------------------------------------------------------------- end to end


def test_evaluate_on_tiny_model(tmp_path, tiny_lm):
    subsets = ["multi_news", "samsum", "trec"]
    root = write_fixture_dir(tmp_path / "lb", subsets=subsets, n=3)
    entered = []

    class Recorder(NoMethod):
        @contextmanager
        def apply(self, lm):
            entered.append(True)
            yield lm

        def example_facts(self):  # a KV press reports the bytes held after the last prefill
            return {"kv_bytes": 100, "kv_bytes_full": 400}

    task = lb.LongBench(subsets=subsets, data_dir=str(root), max_length=48, max_new_tokens=6)
    ctx = RunContext(out_dir=tmp_path / "out", limit=2)
    scores = task.evaluate(tiny_lm, Recorder(), ctx)
    assert entered == [True] * 6  # generation of each example runs inside method.apply
    assert set(scores.metrics) == {*subsets, "average", "multi_news/rouge_l_f", "samsum/rouge_l_f"}
    assert scores.metrics["average"] == pytest.approx(sum(scores.metrics[s] for s in subsets) / 3, abs=0.01)
    assert all(0.0 <= scores.metrics[s] <= 100.0 for s in subsets)
    assert len(scores.predictions) == 6 and scores.main_metric == "average"
    first = scores.predictions[0]
    assert {"subset", "_id", "prediction", "answers", "score", "prompt_tokens"} <= set(first)
    assert first["_id"] == "multi_news-0000" and first["truncated"] and first["prompt_tokens"] <= 51
    assert all(p["new_tokens"] <= 6 for p in scores.predictions)
    # recomputing each example's score from its prediction gives the recorded score and subset mean
    for s in subsets:
        preds = [p for p in scores.predictions if p["subset"] == s]
        again = [lbm.score_example(s, p["prediction"], p["answers"], TREC_CLASSES if s == "trec" else None) for p in preds]
        assert again == [p["score"] for p in preds] and lbm.score_subset(again) == scores.metrics[s]
    assert first["kv_bytes"] == 100 and first["kv_bytes_full"] == 400  # the method's facts, per example


def test_llmlab_run_end_to_end(tmp_path, outputs):
    root = write_fixture_dir(tmp_path / "lb", n=2)
    run_llmlab(["run", "model=tiny-llama", "task=longbench", f"task.data_dir={root}", "task.max_new_tokens=4",
                "logger=none", "limit=2"], outputs, env={"OMP_NUM_THREADS": "1"})  # 1 thread: fastest on a busy CPU
    (res,) = results_under(outputs)
    assert res["status"] == "complete"
    metrics = res["metrics"]
    assert set(lb.ENGLISH_SUBSETS) | {"average"} <= set(metrics)
    assert metrics["average"] == pytest.approx(sum(metrics[s] for s in lb.ENGLISH_SUBSETS) / 16, abs=0.01)
    preds = [json.loads(line) for line in next(outputs.rglob("predictions.jsonl")).read_text().splitlines()]
    assert len(preds) == 32 and {p["subset"] for p in preds} == set(lb.ENGLISH_SUBSETS)


@pytest.mark.parametrize("scale,models,limit", [
    ("cpu", "smollm2-135m", 2),
    ("paper", "llama3-8b-instruct,mistral-7b-instruct,qwen2-7b-instruct,internlm2.5-7b-chat-1m", None),
])
def test_experiment_sweep_follows_scale(scale, models, limit):
    import os

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from conftest import REPO

    with initialize_config_dir(config_dir=os.fspath(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=dynamickv_longbench", f"scale={scale}"], return_hydra_config=True)
        params = OmegaConf.to_container(cfg.hydra.sweeper.params, resolve=True)
        assert params["model"] == models and cfg.limit == limit and cfg.task._target_.endswith("LongBench")
        assert params["method.kv_size"] == "64,96,128,256,512,1024,2048"
        assert params["method"].split(",") == cfg.table.row_order
        assert cfg.table.columns == [*lb.ENGLISH_SUBSETS, "average"]
        needle = compose("config", overrides=["experiment=dynamickv_needle", f"scale={scale}"], return_hydra_config=True)
        assert needle.hydra.sweeper.params["method.kv_size"] == "64"
