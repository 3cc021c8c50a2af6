"""Editing tasks (bizsre, mzsre, zsre, mquake): loaders on fixtures in the original formats,
metrics on hand-computed cases, the evaluation loop on a tiny model, and capability errors."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from llmlab import models
from llmlab.context import RunContext
from llmlab.errors import CapabilityError, UserError
from llmlab.methods.base import NoMethod
from llmlab.methods.editing.base import Editor
from llmlab.metrics.editing import (
    answer_matches,
    answer_tokens,
    exact_match_ml,
    nanmean,
    token_accuracy,
    token_agreement,
    token_f1_ml,
)
from llmlab.tasks.bizsre import BiZsRE
from llmlab.models.probes import argmax_on_targets, prompt_target_ids
from llmlab.tasks.editing import editor_of
from llmlab.tasks.mquake import MQuAKE, starts_with_answer
from llmlab.tasks.mzsre import MzsRE
from llmlab.tasks.zsre import ZsRE

ROOT = Path(__file__).resolve().parents[1]


# -- fixtures in the original formats ------------------------------------------------------------
def zsre_block(i: int, lang: str = "en") -> dict:
    if lang == "zh":
        return {"subject": f"实体{i}", "src": f"实体{i}的创立时间是什么时候？", "rephrase": f"实体{i}是在什么时候推出的？",
                "alt": f"{2000 + i}年", "loc": "海绵宝宝的最后一集叫什么名字", "loc_ans": "The String",
                "portability": {"New Question": f"实体{i}是什么类型的赛事？", "New Answer": "田径"}}
    if lang == "de":
        return {"subject": f"Ding {i}", "src": f"Aus welchem Land kommt Ding {i}?", "rephrase": f"Woher kommt Ding {i}?",
                "alt": "Jemen", "loc": "Wer schrieb Faust", "loc_ans": "Goethe",
                "portability": {"New Question": f"Was ist die Hauptstadt des Landes von Ding {i}?", "New Answer": "Sanaa"}}
    return {"subject": f"Thing {i}", "src": f"When was the inception of Thing {i}?",
            "rephrase": f"When was Thing {i} launched?", "alt": str(2000 + i),
            "loc": "nq question: what is the name of the last episode of spongebob", "loc_ans": "The String",
            "portability": {"New Question": f"What type of event is Thing {i}?", "New Answer": "Athletics"}}


def write(path: Path, data) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


@pytest.fixture
def bizsre_file(tmp_path):
    return write(tmp_path / "bizsre_test.json", [{"en": zsre_block(i), "zh": zsre_block(i, "zh")} for i in range(4)])


def mquake_case(case_id: int) -> dict:
    """One case in the exact layout of princeton-nlp/MQuAKE datasets/MQuAKE-CF-3k-v2.json."""
    return {
        "case_id": case_id,
        "requested_rewrite": [{
            "prompt": "{} is associated with the sport of", "relation_id": "P641",
            "target_new": {"str": "cricket", "id": "Q5375"}, "target_true": {"str": "association football", "id": "Q2736"},
            "subject": f"Dudley Town F.C. {case_id}", "question": f"Which sport is Dudley Town F.C. {case_id} associated with?",
        }],
        "questions": [f"What is the capital of the country where Dudley Town F.C. {case_id}'s sport originated?",
                      f"Which city serves as the capital of the country where the sport played by Dudley Town F.C. {case_id} originated?",
                      f"Which city is the capital of the country where the sport of Dudley Town F.C. {case_id} was created?"],
        "answer": "London", "answer_alias": ["London UK"], "new_answer": "Oderzo", "new_answer_alias": ["Oderzo, Italy"],
        "single_hops": [{"question": "Which sport is it associated with?", "cloze": "It is associated with the sport of",
                         "answer": "association football", "answer_alias": ["football"]}],
        "new_single_hops": [
            {"question": f"Which sport is Dudley Town F.C. {case_id} associated with?",
             "cloze": f"Dudley Town F.C. {case_id} is associated with the sport of", "answer": "cricket", "answer_alias": []},
            {"question": "Which country is cricket from?", "cloze": "Cricket originated in the country of",
             "answer": "Italy", "answer_alias": ["Italia"]},
        ],
        "orig": {"triples": [["Q5311995", "P641", "Q2736"]], "triples_labeled": [["Dudley Town F.C.", "sport", "association football"]],
                 "new_triples": [["Q5311995", "P641", "Q5375"]], "new_triples_labeled": [["Dudley Town F.C.", "sport", "cricket"]],
                 "edit_triples": [["Q5311995", "P641", "Q5375"]]},
    }


@pytest.fixture(scope="module")
def tiny_lm():
    return models.load({"source": "tiny", "arch": "llama", "max_length": 4096})


def ctx(tmp_path, limit=None):
    return RunContext(out_dir=tmp_path / "run", limit=limit)


# -- metrics -------------------------------------------------------------------------------------
def test_token_accuracy_and_agreement_hand_computed():
    assert token_accuracy([5, 6, 7, 8], [5, 0, 7, 0]) == 0.5
    assert token_accuracy([1], [1]) == 1.0
    assert math.isnan(token_accuracy([], []))
    assert token_agreement([1, 2, 3], [1, 2, 4]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        token_accuracy([1, 2], [1])
    assert nanmean([1.0, math.nan, 0.0]) == 0.5


def test_generation_metrics_hand_computed():
    assert exact_match_ml("The 2006.", "2006") == 1.0
    assert exact_match_ml("2006 year", "2006") == 0.0
    # token F1: pred {paris, france}, ref {paris}: P=1/2, R=1 -> 2/3
    assert token_f1_ml("Paris, France", "paris") == pytest.approx(2 / 3)
    # Chinese is scored per character: pred 2,0,0,6,年 vs ref 2006年 -> tokens ["2006", "年"]
    assert answer_tokens("2006年") == ["2006", "年"]
    assert answer_tokens("田径。") == ["田", "径"]
    # pred 田径运动 (4 chars) vs ref 田径 (2): P=2/4, R=1 -> F1 2/3
    assert token_f1_ml("田径运动", "田径") == pytest.approx(2 / 3)
    assert exact_match_ml("田 径", "田径") == 1.0
    assert answer_matches("Oderzo.", ["Oderzo"]) and answer_matches("london uk", ["London", "London UK"])
    assert not answer_matches("Oderzo Italy", ["Oderzo"]) and not answer_matches("", [""])
    assert starts_with_answer(" cricket, a sport played", ["cricket"])
    assert not starts_with_answer("the sport of cricket", ["cricket"])


# -- loaders -------------------------------------------------------------------------------------
def test_bizsre_loader_reads_the_original_layout(bizsre_file):
    cases = BiZsRE(data_path=str(bizsre_file)).load_cases()
    assert len(cases) == 4 and set(cases[0]) == {"en", "zh"}
    assert cases[1]["en"].alt == "2001" and cases[1]["zh"].alt == "2001年"
    assert cases[0]["zh"].portability == [("实体0是什么类型的赛事？", "田径")]
    # a directory holding the file works too
    assert len(BiZsRE(data_path=str(bizsre_file.parent)).load_cases()) == 4


def test_bizsre_malformed_record_names_record_and_key(tmp_path):
    data = [{"en": zsre_block(0), "zh": zsre_block(0, "zh")}, {"en": zsre_block(1), "zh": zsre_block(1, "zh")}]
    del data[1]["zh"]["rephrase"]
    with pytest.raises(UserError, match=r"record 1 \('zh'\) lacks key\(s\) 'rephrase'"):
        BiZsRE(data_path=str(write(tmp_path / "b.json", data))).load_cases()
    data = [{"en": zsre_block(0)}]
    with pytest.raises(UserError, match=r"record 0 has no 'zh' block"):
        BiZsRE(data_path=str(write(tmp_path / "c.json", data))).load_cases()
    bad = [{"en": {**zsre_block(0), "portability": {"New Question": "q"}}, "zh": zsre_block(0, "zh")}]
    with pytest.raises(UserError, match=r"portability\[0\]"):
        BiZsRE(data_path=str(write(tmp_path / "d.json", bad))).load_cases()


def test_missing_data_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="task.data_path"):
        BiZsRE().load_cases()
    with pytest.raises(UserError, match="does not exist"):
        BiZsRE(data_path=str(tmp_path / "nope.json")).load_cases()
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        ZsRE(data_path=str(tmp_path / "broken.json")).load_cases()


def test_hub_offline_names_the_path_option(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="task.data_path"):
        MQuAKE(hub_id="someone/mquake").load_cases()


def test_mzsre_loader_picks_file_by_language(tmp_path):
    write(tmp_path / "mzsre_test_duplicate_ende.json", [{"en": zsre_block(i), "de": zsre_block(i, "de")} for i in range(3)])
    task = MzsRE(data_path=str(tmp_path), lang="de")
    assert task.test_lang == ["en", "de"]
    cases = task.load_cases()
    assert cases[2]["de"].alt == "Jemen" and cases[2]["en"].alt == "2002"
    with pytest.raises(UserError, match="mzsre_test_duplicate_enfr.json"):
        MzsRE(data_path=str(tmp_path), lang="fr").load_cases()
    with pytest.raises(UserError, match="task.lang"):
        MzsRE(lang="xx")


def test_zsre_loader_easyedit_format(tmp_path):
    records = []
    for i in range(3):
        b = zsre_block(i)
        records.append({"subject": b["subject"], "src": b["src"], "pred": "1990", "rephrase": b["rephrase"],
                        "alt": b["alt"] if i != 1 else "", "answers": ["1990"], "loc": b["loc"], "loc_ans": b["loc_ans"],
                        "cond": "1990 >> 2000 || When was ...", **({"portability": b["portability"]} if i == 2 else {})})
    cases = ZsRE(data_path=str(write(tmp_path / "zsre_mend_eval.json", records))).load_cases()
    assert len(cases) == 2  # the empty-alt record is skipped, as EasyEdit does
    assert cases[0]["en"].portability == [] and cases[1]["en"].portability[0][1] == "Athletics"
    records[0]["loc_ans"] = 3
    with pytest.raises(UserError, match=r"record 0: key 'loc_ans' should be a string"):
        ZsRE(data_path=str(write(tmp_path / "z2.json", records))).load_cases()


def test_mquake_loader_original_format(tmp_path):
    path = write(tmp_path / "MQuAKE-CF-3k-v2.json", [mquake_case(1561), mquake_case(7)])
    cases = MQuAKE(data_path=str(tmp_path)).load_cases()  # directory + default hub_file name
    assert len(cases) == 2
    r = cases[0].requests[0]
    assert r.prompt == "Dudley Town F.C. 1561 is associated with the sport of"
    assert (r.subject, r.target_new, r.target_true) == ("Dudley Town F.C. 1561", "cricket", "association football")
    assert cases[0].answers == ["Oderzo", "Oderzo, Italy"] and len(cases[0].questions) == 3
    hop = cases[0].single_hops[1]
    assert (hop.question, hop.cloze, hop.answers) == ("Which country is cricket from?",
                                                       "Cricket originated in the country of", ["Italy", "Italia"])
    bad = [mquake_case(1), mquake_case(2)]
    del bad[1]["requested_rewrite"][0]["target_new"]
    with pytest.raises(UserError, match=r"record 1 requested_rewrite\[0\] needs keys"):
        MQuAKE(data_path=str(write(tmp_path / "bad.json", bad))).load_cases()
    bad = [mquake_case(1)]
    bad[0]["requested_rewrite"][0]["prompt"] = "Dudley is associated with"
    with pytest.raises(UserError, match=r"should contain '\{\}'"):
        MQuAKE(data_path=str(write(tmp_path / "bad2.json", bad))).load_cases()
    assert path.exists()


# -- capability ----------------------------------------------------------------------------------
def test_editing_tasks_accept_none_and_editors_and_refuse_presses_before_loading(bizsre_file):
    from llmlab.methods.kv.dynamickv import DynamicKV

    task = BiZsRE(data_path=str(bizsre_file))
    task.check(NoMethod())
    task.check(Editor())
    with pytest.raises(CapabilityError, match="task bizsre needs a method with knowledge editing; dynamickv is a "
                                              "method for KV-cache compression") as err:
        task.check(DynamicKV())
    assert all(name in str(err.value) for name in ("ft", "rome", "memit", "ike", "xkde", "reason_ke"))
    assert editor_of(NoMethod()) is None
    ed = Editor()
    assert editor_of(ed) is ed


def argmax_on_target(lm, prompt, target):
    return argmax_on_targets(lm, [(prompt, target)])[0]


# -- the loop on a tiny model --------------------------------------------------------------------
def test_argmax_on_target_is_teacher_forced(tiny_lm):
    predicted, gold = argmax_on_target(tiny_lm, "When was it founded?", "2006")
    ids = tiny_lm.tokenizer("When was it founded? 2006")["input_ids"]
    n = len(tiny_lm.tokenizer("When was it founded?")["input_ids"])
    assert gold == ids[n:] and len(predicted) == len(gold)
    with torch.no_grad():
        logits = tiny_lm.model(input_ids=torch.tensor([ids])).logits[0]
    assert predicted == logits[n - 1:-1].argmax(-1).tolist()


def test_bizsre_evaluate_none_names_every_direction(tiny_lm, bizsre_file, tmp_path):
    task = BiZsRE(data_path=str(bizsre_file), metrics=["token_acc", "exact_match"], max_new_tokens=3)
    scores = task.evaluate(tiny_lm, NoMethod(), ctx(tmp_path, limit=2))
    for direction in ("en_en", "en_zh"):
        for probe in ("reliability", "generality", "locality", "portability"):
            assert f"{direction}/{probe}/token_acc" in scores.metrics
            assert f"{direction}/{probe}/exact_match" in scores.metrics
    assert scores.metrics["locality/token_acc"] == 1.0  # unedited: nothing changed
    assert scores.main_metric == "reliability/token_acc"
    assert len(scores.predictions) == 4 and scores.predictions[1]["test_lang"] == "zh"
    assert "token_f1" not in str(list(scores.metrics))
    # token_acc by hand for case 0, en->en reliability
    p, g = argmax_on_target(tiny_lm, zsre_block(0)["src"], zsre_block(0)["alt"])
    assert scores.predictions[0]["reliability"]["token_acc"] == token_accuracy(p, g)


def test_bizsre_zh_to_en_and_ft_edits_change_locality_scores(tiny_lm, bizsre_file, tmp_path):
    from llmlab.methods.editing.ft import FT

    task = BiZsRE(data_path=str(bizsre_file), edit_lang=["zh"], test_lang=["en"], metrics=["token_acc"])
    c = ctx(tmp_path, limit=2)
    ft = FT(num_steps=3, lr=0.05)
    scores = task.evaluate(tiny_lm, ft, c)
    assert set(k.split("/")[0] for k in scores.metrics) >= {"zh_en", "reliability"}
    facts = ft.report()
    assert facts["edits"] == 2 and facts["edits_per_second"] > 0 and facts["edit_calls"] == 2
    assert facts["loss_first_pass_mean"] > 0 and facts["last_edit_passes"] >= 1
    assert scores.predictions[0]["edit"]["target_new"] == "2000年"


def test_mquake_batches_and_scores(tiny_lm, tmp_path):
    write(tmp_path / "m.json", [mquake_case(i) for i in range(3)])
    seen = []

    class Recorder(Editor):
        name = "recorder"

        def prompt_for(self, lm, query, requests, lang=None):
            seen.append(len(requests))
            return query

    task = MQuAKE(data_path=str(tmp_path / "m.json"), edit_batch_size=2, max_new_tokens=2)
    scores = task.evaluate(tiny_lm, Recorder(), ctx(tmp_path))
    assert set(scores.metrics) == {"multihop/fewshot_em", "multihop/exact", "edit_wise/cloze_match",
                                   "instance_wise/fewshot_em"}
    assert scores.info["batches"] == 2 and sorted(set(seen)) == [1, 2]
    assert scores.info["answers"].startswith("few-shot")  # Recorder has no answering protocol of its own
    assert all(0.0 <= v <= 1.0 for v in scores.metrics.values())
    assert len(scores.predictions) == 3 and len(scores.predictions[0]["questions"]) == 3
    with pytest.raises(UserError, match="edit_batch_size"):
        MQuAKE(edit_batch_size="lots").batch_size(3)
    assert MQuAKE(edit_batch_size="all").batch_size(3) == 3


def test_mquake_counts_a_correct_answer(tiny_lm, tmp_path, monkeypatch):
    """With generation patched to answer from the prompt, the scores are exactly computable."""
    import llmlab.tasks.mquake as mq

    write(tmp_path / "m.json", [mquake_case(0), mquake_case(1)])

    def answer(prompt):
        if "sport of" in prompt and "Q:" not in prompt:
            return "cricket"  # every cloze right
        if prompt.endswith("originated? A:"):  # question 1 of each case
            return "Oderzo" if "Town F.C. 0" in prompt else "London"
        return "Italy" if "cricket" in prompt else "nothing"

    def fake_generate(lm, prompts, chat=False, max_new_tokens=16):
        return [answer(p) for p in prompts]

    monkeypatch.setattr(mq, "generate_answers", fake_generate)
    scores = MQuAKE(data_path=str(tmp_path / "m.json")).evaluate(tiny_lm, NoMethod(), ctx(tmp_path))
    assert scores.metrics["edit_wise/cloze_match"] == 1.0
    assert scores.metrics["multihop/fewshot_em"] == 0.5
    assert scores.metrics["instance_wise/fewshot_em"] == 0.0  # first single hop is never answered


# -- end to end through the CLI ------------------------------------------------------------------
@pytest.mark.skipif(not (ROOT / "llmlab" / "runner.py").exists(), reason="runner not present")
def test_llmlab_run_bizsre_ft_end_to_end(bizsre_file, tmp_path):
    env = dict(os.environ, LLMLAB_OUTPUTS=str(tmp_path / "out"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "llmlab.cli", "run", "task=bizsre", "method=ft", "model=tiny-llama",
           f"task.data_path={bizsre_file}", "logger=none", "limit=2", "method.num_steps=2",
           "task.metrics=[token_acc]"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    results = list((tmp_path / "out").rglob("results.json"))
    assert len(results) == 1
    data = json.loads(results[0].read_text())
    assert "en_zh/reliability/token_acc" in data["metrics"] and data["main_metric"] == "reliability/token_acc"


def test_generate_answer_skips_leading_blank_lines():
    """Base models often answer a raw question on the next line: the first non-blank line counts,
    and decoding goes on until that line has ended."""
    from llmlab.models.probes import answer_line, has_answer_line

    assert not has_answer_line("\n") and not has_answer_line(" \n\n") and not has_answer_line("Paris")
    assert has_answer_line("\nParis\n") and has_answer_line("Paris\nThe")
    assert answer_line("\n  Paris \nThe capital") == "Paris" and answer_line(" \n") == ""


def test_batched_probes_match_one_by_one(tiny_lm):
    """Left-padded batches give each prompt the answer it gets alone (tokens and generations)."""
    from llmlab.generation import greedy_generate
    from llmlab.models.probes import generate_answers

    pairs = [("When was it founded?", "2006"), ("Capital of France, the country?", "Paris"),
             ("The sea", "is deep and cold in the north"), ("Q", "A B")]
    batched = argmax_on_targets(tiny_lm, pairs)
    for (prompt, target), got in zip(pairs, batched):
        ids, n = prompt_target_ids(tiny_lm.tokenizer, prompt, target)
        with torch.no_grad():
            logits = tiny_lm.model(input_ids=torch.tensor([ids])).logits[0]
        assert got == (logits[n - 1:-1].argmax(-1).tolist(), ids[n:])
    prompts = [p for p, _ in pairs]
    answers = generate_answers(tiny_lm, prompts, max_new_tokens=6)
    for prompt, answer in zip(prompts, answers):
        alone = greedy_generate(tiny_lm, tiny_lm.encode(prompt), 6)[0]
        text = tiny_lm.decode(alone)
        assert answer == next((x.strip() for x in text.split("\n") if x.strip()), "")


def test_in_context_editors_report_no_edit_rate(tiny_lm):
    from llmlab.capabilities import EditRequest
    from llmlab.methods.editing.base import InContextEditor

    ed = InContextEditor()
    with ed.edit(tiny_lm, [EditRequest("p", "p", "t")]):
        pass
    assert "edits_per_second" not in ed.report() and ed.summary() is None
