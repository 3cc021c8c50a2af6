"""Translation task on replayed outputs: BLEU/chrF as sacrebleu computes them (zh tokenizer for Chinese),
signatures recorded, the target-script check, and bad input before any model loads."""

from __future__ import annotations

import json

import pytest
import sacrebleu

from llmlab.errors import UserError
from llmlab.fixtures import fixture_path
from llmlab.tasks.translation import Translation, in_script


def _run(llmlab_inproc, outputs, direction, system, tag):
    mt = fixture_path("mt")
    code, out, err = llmlab_inproc("task=translation", "method=none", "model=replay", "model.format=lines",
                                   f"model.path={mt}/results/multilingual_translation/{direction}/{system}.txt",
                                   f"task.data_dir={mt}/data/multilingual_translation", f"task.direction={direction}",
                                   "logger=none", f"output_root={outputs / tag}")
    assert code == 0, err
    return json.loads(next((outputs / tag).rglob("results.json")).read_text()), mt


def test_replayed_bleu_and_chrf_equal_sacrebleu_with_the_target_tokenizer(llmlab_inproc, outputs):
    for direction, ref_code, tokenize in (("enzh", "zho_Hans", "zh"), ("ende", "deu_Latn", "13a")):
        results, mt = _run(llmlab_inproc, outputs, direction, "baseline", direction)
        hyps = open(f"{mt}/results/multilingual_translation/{direction}/baseline.txt", encoding="utf-8").read().split("\n")[:3]
        refs = open(f"{mt}/data/multilingual_translation/{ref_code}.devtest", encoding="utf-8").read().split("\n")[:3]
        expected = sacrebleu.corpus_bleu(hyps, [refs], tokenize=tokenize).score
        assert results["metrics"]["bleu"] == pytest.approx(expected)
        assert results["metrics"]["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
        assert f"tok:{tokenize}" in results["info"]["bleu_signature"] and results["metrics"]["target_script"] == 100.0
        assert "comet" not in results["metrics"] and results["info"]["comet"].startswith("skipped")


def test_target_script_flags_outputs_in_the_wrong_language():
    assert in_script("猫睡在垫子上。", "zh") and not in_script("The cat sleeps.", "zh")
    assert in_script("Die Katze schläft.", "de") and not in_script("猫睡在垫子上。", "de")


def test_bad_direction_and_unequal_files_fail_with_one_paragraph(tmp_path):
    with pytest.raises(UserError, match="two language codes"):
        Translation(direction="enfr")
    (tmp_path / "s.txt").write_text("a\nb\n")
    (tmp_path / "r.txt").write_text("a\n")
    with pytest.raises(UserError, match="one reference per source line"):
        Translation(direction="ende", source_path=str(tmp_path / "s.txt"), reference_path=str(tmp_path / "r.txt")).check_data()


def test_comet_asked_for_but_unavailable_is_refused_before_loading(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "s.txt").write_text("a\n")
    (tmp_path / "r.txt").write_text("a\n")
    task = Translation(direction="ende", source_path=str(tmp_path / "s.txt"), reference_path=str(tmp_path / "r.txt"),
                       comet_model=str(tmp_path / "no-such-model.ckpt"))
    with pytest.raises(UserError, match=r"is not a COMET checkpoint here.*the hub is off"):
        task.check_data()
