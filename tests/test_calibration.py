"""Calibration data for pruning: sources and formats as the official lib/data.py builds them."""

from __future__ import annotations

import json

import pytest
import torch

from llmlab.data.calibration import Calibration, task_examples, windows
from llmlab.errors import UserError


@pytest.fixture(scope="module")
def tok():
    from llmlab.models.tiny import tiny_tokenizer

    return tiny_tokenizer()


def gsm8k_file(tmp_path):
    rows = [{"question": f"Tom has {i} apples and buys {i + 1} more. How many apples?",
             "answer": f"He has {i} + {i + 1} = <<{i}+{i + 1}={2 * i + 1}>>{2 * i + 1} apples.\n#### {2 * i + 1}"}
            for i in range(40)]
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def test_gsm8k_examples_render_as_the_release(tmp_path):
    ex = task_examples(Calibration(source="gsm8k", path=str(gsm8k_file(tmp_path))))
    assert ex[3]["prompt"] == "Question: Tom has 3 apples and buys 4 more. How many apples?\nAnswer: "
    assert ex[3]["answer"] == "7"
    assert ex[3]["cot"].endswith("\nAnswer: He has 3 + 4 = <<3+4=7>>7 apples.. So the answer is 7.")  # the release's ". So"


@pytest.mark.parametrize("fmt", ["zero", "single", "icl", "cot"])
def test_formats_give_nsamples_windows_of_seqlen(tmp_path, tok, fmt):
    c = Calibration(source="gsm8k", format=fmt, path=str(gsm8k_file(tmp_path)), nsamples=5, seqlen=64)
    out = windows(c, tok)
    assert len(out) == 5 and all(ids.shape == (1, 64) and mask.shape == (1, 64) for ids, mask in out)
    pads = [int((m == 0).sum()) for _, m in out]
    if fmt in ("zero", "single"):  # one short example, left-padded with mask 0
        assert all(p > 0 for p in pads) and all(m[0, -1] == 1 and m[0, 0] == 0 for _, m in out)
    else:  # concatenated examples: a full window, no pads
        assert pads == [0] * 5
    again = windows(c, tok)  # seeded: the same windows
    assert all(torch.equal(a[0], b[0]) for a, b in zip(out, again))


def test_zero_format_holds_the_question_only(tmp_path, tok):
    c = Calibration(source="gsm8k", format="zero", path=str(gsm8k_file(tmp_path)), nsamples=3, seqlen=64)
    for ids, mask in windows(c, tok):
        text = tok.decode(ids[0][mask[0].bool()].tolist())
        assert "Question:" in text and "####" not in text and text.rstrip().endswith("Answer:")


def test_controls_and_text_windows(tmp_path, tok):
    (tmp_path / "valid.txt").write_text(" ".join(f"word{i % 50}" for i in range(3000)))
    text = windows(Calibration(source="text", path=str(tmp_path / "valid.txt"), nsamples=4, seqlen=32), tok)
    assert len({tuple(ids[0].tolist()) for ids, _ in text}) == 4
    dots = windows(Calibration(source="ellipses", nsamples=2, seqlen=32), tok)
    assert set(tok.decode(dots[0][0][0].tolist()).replace(" ", "")) == {"."}
    rnd = windows(Calibration(source="random", nsamples=2, seqlen=32), tok)
    assert not torch.equal(rnd[0][0], rnd[1][0])


def test_bad_calibration_settings_name_the_fix(tmp_path):
    with pytest.raises(UserError, match="not a calibration source"):
        Calibration(source="c5")
    with pytest.raises(UserError, match="needs rationales"):
        Calibration(source="svamp", format="cot")
    with pytest.raises(UserError, match=r"calibration=none \(no calibration data\) is for .*method=none"):
        Calibration(source="none")  # the dense reference row's choice: a calibrating pruner refuses it
    with pytest.raises(UserError) as err:
        Calibration(source="gsm8k", path=str(tmp_path / "missing.jsonl")).check()
    assert "missing.jsonl does not exist" in str(err.value) and "gsm8k" in str(err.value)


def test_wanda_calibrates_on_gsm8k_from_the_config_group(tmp_path, llmlab_inproc, outputs):
    path = gsm8k_file(tmp_path)
    code, out, err = llmlab_inproc("method=wanda", "model=tiny-llama", "task=perplexity", "calibration=gsm8k",
                                   "calibration.format=single", f"calibration.path={path}", "calibration.nsamples=2",
                                   "calibration.seqlen=32", "task.max_tokens=256", "logger=none")
    assert code == 0, err
    info = json.loads(next(outputs.rglob("results.json")).read_text())["method_info"]
    assert info["calibration"]["source"] == "gsm8k" and info["calibration"]["format"] == "single"
    assert 0.5 <= info["sparsity"] < 0.51


def test_a_prune_is_cached_and_reused_by_the_next_task(tmp_path, llmlab_inproc, outputs, monkeypatch):
    monkeypatch.setenv("LLMLAB_CACHE", str(tmp_path / "cache"))
    common = ("method=wanda", "model=tiny-llama", "calibration=text", "calibration.nsamples=2", "calibration.seqlen=32",
              "task=perplexity", "logger=none")
    for tokens in (128, 256):  # two different tasks (budgets) on the same pruned model
        code, out, err = llmlab_inproc(*common, f"task.max_tokens={tokens}")
        assert code == 0, err
    def info_of(tokens: int, seed: int = 0) -> dict:  # by config: `finished` has one-second resolution, too coarse here
        found = [r for r in map(lambda p: json.loads(p.read_text()), outputs.rglob("results.json"))
                 if r["config"]["task"]["max_tokens"] == tokens and r["config"]["method"]["seed"] == seed]
        assert len(found) == 1
        return found[0]["method_info"]

    first, second = info_of(128), info_of(256)
    assert first["reused"] is False and second["reused"] is True and first["checkpoint"] == second["checkpoint"]
    assert second["sparsity"] == first["sparsity"] and second["sparsity_per_layer"] == first["sparsity_per_layer"]
    code, out, err = llmlab_inproc(*common, "task.max_tokens=128", "calibration.seed=1")  # other windows: pruned anew
    assert code == 0, err
    third = info_of(128, seed=1)
    assert third["reused"] is False and third["checkpoint"] != first["checkpoint"]
