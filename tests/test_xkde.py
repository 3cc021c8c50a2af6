"""X-KDE: data builder, prompt format, TL-PO pairs, both training stages on tiny-llama, checkpoint cache."""

import json
import time

import pytest
import torch

from llmlab.context import RunContext
from llmlab.data import xkde as data
from llmlab.errors import UserError
from llmlab.capabilities import EditRequest
from llmlab.methods.editing.xkde import XKDE, detect_lang
from llmlab.training.trainers import answer_loss

EN = ["What is the native language of Ann Lee?\tGerman", "Who designed the Blue Tower?\tMario Rossi",
      "What gender is Tom Bo?\t", "Which river flows through Foo?\tRhine", "What sport does Kai play?\tchess"]
ZH = ["Ann Lee的母语是什么？\t德语", "谁设计了蓝塔？\t马里奥·罗西", "Tom Bo是什么性别？\t男", "哪条河流经Foo？\t莱茵河",
      "Kai从事什么运动？\t国际象棋"]


@pytest.fixture
def parallel_dir(tmp_path):
    d = tmp_path / "mzsre_train"
    d.mkdir()
    (d / "zsre_mend_train_en_10000.txt").write_text("\n".join(EN) + "\n", encoding="utf-8")
    (d / "zsre_mend_train_zh_10000.txt").write_text("\n".join(ZH) + "\n", encoding="utf-8")
    return d


def test_prompt_is_the_official_template():
    assert data.xkde_prompt("Who designed X?", "Ann", "谁设计了X？", "zh") == (
        "Please acknowledge the updated information provided below and respond to the subsequent query in Chinese.\n\n"
        "[Updated Information]:\nWho designed X? Ann\n\n[Query]:\n谁设计了X？")
    editor = XKDE()
    req = EditRequest(prompt="Who designed X?", subject="X", target_new="Ann")
    with editor.edit(None, [req]):
        assert editor.prompt_for(None, "谁设计了X？") == data.xkde_prompt("Who designed X?", "Ann", "谁设计了X？", "zh")
        assert editor.prompt_for(None, "Who made X?").startswith(
            "Please acknowledge the updated information provided below and respond to the subsequent query in English.")
        assert "query in German." in editor.prompt_for(None, "Wer hat X entworfen?", lang="de")
        editor.query_lang = "zh"  # the config's override wins over the task's language
        assert "query in Chinese." in editor.prompt_for(None, "Wer hat X entworfen?", lang="de")
    assert editor.prompt_for(None, "plain") == "plain"  # outside an edit: unchanged
    assert detect_lang("谁设计了X？") == "zh" and detect_lang("Who?") == "en" and detect_lang("Кто?") == "ru"


def test_builder_reads_parallel_files_and_makes_in_and_out_of_scope(parallel_dir):
    rows = data.read_parallel(data.parallel_files(parallel_dir, ["en", "zh"]))
    assert len(rows) == 4  # the line with an empty English answer is dropped in both languages
    assert rows[2]["en"] == ("Which river flows through Foo?", "Rhine") and rows[2]["zh"][1] == "莱茵河"
    ex = data.xeit_examples(rows, [("en", "zh"), ("zh", "en")], out_of_scope_ratio=1.0, seed=0)
    inscope = [e for e in ex if e["scope"] == "in"]
    outscope = [e for e in ex if e["scope"] == "out"]
    assert len(inscope) == 8 and len(outscope) == 8
    first = inscope[0]
    assert first["prompt"] == data.xkde_prompt("What is the native language of Ann Lee?", "German",
                                               "Ann Lee的母语是什么？", "zh") and first["answer"] == "德语"
    for e in outscope:  # an unrelated query, answered as its own line states it, in the target language
        row = rows[e["row"]]
        query = e["prompt"].rsplit("[Query]:\n", 1)[1]
        assert query != row[e["target"]][0]
        assert any(r[e["target"]] == (query, e["answer"]) for r in rows)
    official = data.to_official(ex)
    assert official[0]["conversations"][0]["from"] == "human" and official[0]["conversations"][1]["value"] == "德语"
    (parallel_dir / "bad.json").write_text(json.dumps(official), encoding="utf-8")
    assert [e["answer"] for e in data.read_xeit_json(parallel_dir / "bad.json")] == [e["answer"] for e in ex]


def test_builder_errors_are_clear(parallel_dir, tmp_path):
    (parallel_dir / "zsre_mend_train_de_10000.txt").write_text("only one\tline\n", encoding="utf-8")
    with pytest.raises(UserError, match="not line-aligned"):
        data.read_parallel(data.parallel_files(parallel_dir, ["en", "de"]))
    with pytest.raises(UserError, match="data_dir"):
        data.read_parallel({"fr": tmp_path / "nope.txt"})
    (parallel_dir / "zsre_mend_train_fr_10000.txt").write_text("no tab here\n", encoding="utf-8")
    with pytest.raises(UserError, match="question<TAB>answer"):
        data.read_parallel(data.parallel_files(parallel_dir, ["fr"]))


def test_preference_pairs_follow_the_official_rules():
    pairs = data.preference_pairs("P", "德语", ["德语", "德国", "英语", "德国", "法语"], [1.0, 0.5, 0.0, 0.5, 0.0])
    got = {(p["chosen"], p["rejected"]) for p in pairs}
    # gold-equal sample dropped, duplicates merged, equal scores not paired, gold over the best sample
    assert got == {("德国", "英语"), ("德国", "法语"), ("德语", "德国")}
    assert data.preference_pairs("P", "a", ["a", "a"], [1, 1]) == []


def _xkde(parallel_dir, **kw):
    small = dict(train_rows=2, tlpo_prompts=2, sft=dict(max_steps=3, batch_size=4, learning_rate=3e-3, warmup_ratio=0.0,
                                                        max_length=128),
                 orpo=dict(max_steps=2, batch_size=4, grad_accum=1, warmup_steps=0, learning_rate=3e-3, max_length=128))
    return XKDE(data_dir=str(parallel_dir), samples=3, max_new_tokens=4, directions=["en_zh", "zh_en"],
                out_of_scope_ratio=0.5, **small, **kw)


def test_both_stages_lower_the_loss_and_the_checkpoint_is_reused(parallel_dir, tmp_path, monkeypatch):
    from llmlab.models import load

    monkeypatch.setenv("LLMLAB_CACHE", str(tmp_path / "cache"))
    spec = {"name": "tiny-llama", "source": "tiny", "arch": "llama", "chat": True}
    lm = load(spec)
    editor = _xkde(parallel_dir)
    examples = editor.xeit_data(0)
    before = answer_loss(lm, examples)
    ctx = RunContext(out_dir=tmp_path / "run1")
    editor.prepare(lm, ctx)
    facts = editor.report()
    assert answer_loss(lm, examples) < before
    sft_sum, orpo_sum = facts["XE-IT (SFT)_summary"], facts["TL-PO (ORPO)_summary"]
    assert sft_sum["last_loss"] < sft_sum["first_loss"] and orpo_sum["last_loss"] < orpo_sum["first_loss"]
    assert facts["tlpo_pairs"] > 0 and facts["xeit_cached"] is False and facts["tlpo_cached"] is False
    assert (tmp_path / "run1" / "xkde_loss.png").stat().st_size > 1000 and ctx.artifacts
    trained = {k: v.clone() for k, v in lm.model.state_dict().items()}

    lm2 = load(spec)  # fresh base weights; the second prepare loads both stages from the cache
    ctx2 = RunContext(out_dir=tmp_path / "run2")
    start = time.perf_counter()
    second = _xkde(parallel_dir)
    second.prepare(lm2, ctx2)
    assert time.perf_counter() - start < 10
    assert second.report()["xeit_cached"] is True and second.report()["tlpo_cached"] is True
    assert all(torch.equal(trained[k], v) for k, v in lm2.model.state_dict().items())

    lm3 = load(spec)  # XE-IT only (xkde_it) shares the stage-1 checkpoint
    ctx3 = RunContext(out_dir=tmp_path / "run3")
    third = _xkde(parallel_dir, tlpo=False)
    third.prepare(lm3, ctx3)
    assert third.report()["xeit_cached"] is True and "tlpo_cached" not in third.report()


def test_scorer_choice_and_nllb_error(monkeypatch):
    with pytest.raises(UserError, match="scorer"):
        XKDE(scorer="bleu")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    editor = XKDE(scorer="nllb", nllb_model="/nonexistent/nllb-200")
    with pytest.raises(UserError, match="scorer=token_f1"):
        editor.score(["德国"], "德语", "zh")
    assert XKDE().score(["德语", "英语"], "德语", "zh") == [1.0, 0.5]


@pytest.mark.parametrize("scale,epochs,accum,sft_accum,tokens", [("paper", 3, 64, 8, 2048), ("cpu", 3, 1, 1, 16)])
def test_the_scale_picks_the_recipe_in_config(scale, epochs, accum, sft_accum, tokens, monkeypatch):
    """scale=paper is the official recipe (ORPO 3 epochs, 2 x 16 x 4 = 128 pairs per step, reached by
    accumulation on one process; XE-IT 8 x 1); scale=cpu caps it; results.json holds what ran."""
    from pathlib import Path

    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from llmlab.training.trainers import TrainSettings, accumulation

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    conf = Path(__file__).resolve().parent.parent / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("config", overrides=["method=xkde", f"scale={scale}"])
    editor = instantiate(cfg.method, _convert_="all")
    orpo = TrainSettings.from_dict(editor.orpo, "orpo")
    assert (orpo.epochs, accumulation(orpo), editor.max_new_tokens) == (epochs, accum, tokens)
    assert accumulation(TrainSettings.from_dict(editor.sft, "sft")) == sft_accum
    monkeypatch.setenv("WORLD_SIZE", "4")
    if scale == "paper":
        assert accumulation(orpo) == 16  # on the official 4 processes: example.json's 16


def test_held_out_pairs_are_disjoint_and_seeded():
    from llmlab.training.trainers import held_out

    rows = [{"i": i} for i in range(40)]
    train, dev = held_out(rows, 0.05)
    assert len(dev) == 2 and len(train) == 38 and not {r["i"] for r in dev} & {r["i"] for r in train}
    assert held_out(rows, 0.05) == (train, dev) and held_out(rows, 0.0) == (rows, [])
