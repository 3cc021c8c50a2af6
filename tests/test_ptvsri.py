"""PTvsRI's data, training and probes: the synthetic language pair, the release's noise, mBART's denoising
pairs and layout, the NMT task and the two probes, end to end on the tiny mBART (the experiment's whole sweep runs
in tests/test_smoke_experiments.py)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch

from llmlab.data.noise import BLANK, add_noise
from llmlab.fixtures import fixture_path
from llmlab.fixtures import synthetic_mt as smt
from llmlab.training.seq2seq import denoising_rows


def test_synthetic_pair_is_deterministic_with_agreement_and_verb_final_subordinates():
    a, b = smt.pairs("news", 300, seed=7), smt.pairs("news", 300, seed=7)
    assert a == b and smt.pairs("news", 300, seed=8) != a
    verbs = {smt.cipher(v) + end for d in smt.LEXICON.values() for v in d["verbs"] for end in ("t", "en")}
    subordinate = 0
    for src, tgt in a:
        for conj_src, conj_tgt in smt.SUBORDINATORS.items():
            if f" {conj_src} " in src:
                subordinate += 1
                assert tgt.split()[-1] in verbs                      # the subordinate clause ends in its verb
        # a singular noun phrase's determiner agrees with its noun's gender
        for det, noun in re.findall(r"\b(der|die|das) ([A-Z]\w+)\b", tgt):
            stems = [n for d in smt.LEXICON.values() for n in d["nouns"]] + smt.names()
            match = [n for n in stems if smt.cipher(n).capitalize() == noun]
            if match:
                assert det == ("der", "die", "das")[smt.gender(match[0])]
    assert subordinate > 50


def test_synthetic_files_keep_the_domains_apart(tmp_path):
    smt.write(tmp_path, n_train=2000, n_mono=600, n_valid=50, n_test=50)
    train = set((tmp_path / "train.en").read_text().split())
    mono = set((tmp_path / "mono.en").read_text().split())
    ood = set(smt.LEXICON["it"]["nouns"]) | set(smt.LEXICON["medical"]["nouns"])
    assert not (ood & train)                 # RI never sees an IT or medical word
    assert ood & mono                        # PT's pre-training does (unaligned)
    for name in ("train", "valid", "test", "it", "medical", "mono"):
        assert len((tmp_path / f"{name}.en").read_text().splitlines()) == len(
            (tmp_path / f"{name}.de").read_text().splitlines())


def test_noise_is_the_release_word_blank_seeded():
    lines = [" ".join(f"w{i}{j}" for j in range(20)) for i in range(50)]
    one, two = add_noise(lines, seed=3, moses=False), add_noise(lines, seed=3, moses=False)
    assert one == two and add_noise(lines, seed=4, moses=False) != one
    words = [w for line in one for w in line.split()]
    assert len(words) == 1000                                     # wd 0, k 0: nothing dropped or moved
    assert 0.05 < sum(w == BLANK for w in words) / len(words) < 0.15
    assert all(w == BLANK or w == o for line, orig in zip(one, lines) for w, o in zip(line.split(), orig.split()))
    assert add_noise(["The cat, sadly, sat."], word_blank_p=0.0)[0] == "The cat, sadly, sat."   # moses round trip


def test_denoising_masks_35_percent_of_words_in_spans():
    text = " ".join(f"w{i}" for i in range(40))
    row = denoising_rows([text], "en", seed=0)[0]
    assert row["target"] == text and row["src"] == row["tgt"] == "en"
    kept = [w for w in row["source"].split() if w != "<mask>"]
    assert len(kept) == 40 - 14                                   # round(40 * 0.35) words masked
    assert kept == [w for w in text.split() if w in kept]         # the rest in order
    assert "<mask> <mask>" not in row["source"]                   # one mask per span


@pytest.fixture(scope="module")
def nmt_tiny():
    from llmlab.models import load

    d = fixture_path("synthetic_mt")
    return load({"name": "nmt-tiny", "source": "scratch", "kind": "seq2seq", "arch": "mbart",
                 "config": {"d_model": 32, "encoder_layers": 1, "decoder_layers": 1, "encoder_attention_heads": 2,
                            "decoder_attention_heads": 2, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64,
                            "max_position_embeddings": 128},
                 "tokenizer": {"corpus": [f"{d}/valid.en", f"{d}/valid.de"], "vocab_size": 200},
                 "lang_codes": {"en": "en_XX", "de": "de_DE"}})


def test_mbart_layout_and_training_lowers_the_loss(nmt_tiny):
    from llmlab.models import nmt
    from llmlab.training.seq2seq import Seq2SeqSettings, train_seq2seq

    lm = nmt_tiny
    de = nmt.lang_id(lm, "de")
    ids = nmt.encode(lm, "the new tax", "en", 64)
    assert ids[-2:] == [lm.tokenizer.eos_token_id, nmt.lang_id(lm, "en")]
    batch = nmt.collate([nmt.example(lm, "the tax", "die Dez", "en", "de", 64)], lm.tokenizer.pad_token_id)
    assert batch["decoder_input_ids"][0, 0].item() == de           # the decoder starts from [de_DE]
    assert batch["labels"][0, -1].item() == de
    src = ["the new tax", "a strong court", "the leaders win"] * 4
    tgt = ["die neui Dez", "ein zdlumker Cualdt", "die Roitirin womin"] * 4
    before = nmt.loss_bits(lm, src, tgt, "en", "de")
    rows = [{"source": s, "target": t, "src": "en", "tgt": "de"} for s, t in zip(src, tgt)]
    train_seq2seq(lm, rows, Seq2SeqSettings(max_steps=30, batch_size=6, learning_rate=3e-3, warmup_steps=2,
                                            dropout=0.0, logging_steps=100))
    after = nmt.loss_bits(lm, src, tgt, "en", "de")
    assert after < before - 1.0
    out = nmt.translate(lm, src[:2], "en", "de", beam=2, max_new_tokens=10)
    assert len(out) == 2 and all(isinstance(o, str) for o in out)


def test_landscape_directions_are_filter_normalised_and_skip_1d_and_embeddings():
    from llmlab.tasks.loss_landscape import directions

    g = torch.Generator().manual_seed(0)
    init = {"model.encoder.layers.0.fc1.weight": torch.randn(6, 4, generator=g),
            "model.encoder.layers.0.fc1.bias": torch.randn(6, generator=g),
            "model.shared.weight": torch.randn(10, 4, generator=g)}
    final = {k: v + torch.randn(v.shape, generator=g) for k, v in init.items()}
    other = {k: v + 5 * torch.randn(v.shape, generator=g) for k, v in init.items()}
    d1, d2 = directions(final, init, other)
    w = "model.encoder.layers.0.fc1.weight"
    assert torch.allclose(d1[w], final[w] - init[w])
    assert torch.allclose(d2[w].norm(dim=0), d1[w].norm(dim=0), atol=1e-5)   # column norms of d1
    for k in ("model.encoder.layers.0.fc1.bias", "model.shared.weight"):
        assert not d1[k].any() and not d2[k].any()


def test_nmt_refuses_a_causal_model_and_missing_sets_before_loading(llmlab_inproc):
    code, out, err = llmlab_inproc("experiment=ptvsri_wmt", "scale=smoke", "model=tiny-llama", "method=ri",
                                   "task=nmt", "logger=none")
    assert code != 0 and "encoder-decoder" in (out + err) and "kind=causal" in (out + err)
    code, out, err = llmlab_inproc("model=nmt-tiny", "method=none", "task=nmt", "logger=none")
    assert code != 0 and "task.sets" in (out + err)


def test_probes_end_to_end_write_their_plots(llmlab_inproc, outputs):
    d = fixture_path("synthetic_mt")
    common = ["model=nmt-tiny", "logger=none", "scale=smoke", "limit=3", f"task.source={d}/test.en",
              f"task.reference={d}/test.de"]
    code, out, err = llmlab_inproc("method=none", "task=lexical_entropy", *common)
    assert code == 0, out + err
    res = json.loads(next(outputs.rglob("results.json")).read_text())
    counts = json.loads(next(outputs.rglob("lexical_entropy.json")).read_text())
    assert sum(counts["counts"]) == counts["positions"] == res["info"]["positions"] > 0
    assert next(outputs.rglob("lexical_entropy.png")).stat().st_size > 1000
    assert 0 < res["metrics"]["entropy_mean"] <= math.log2(200) + 1e-6   # at most uniform over the vocabulary
    code, out, err = llmlab_inproc("method=none", "task=loss_landscape", *common, "task.points=3")
    assert code != 0 and "training endpoints" in (out + err)              # method=none has no init to walk from
    code, out, err = llmlab_inproc("method=ri", "task=loss_landscape", *common, "task.points=3",
                                   "task.direction_norm=0.5")
    assert code == 0, out + err
    grid = json.loads(next(outputs.rglob("loss_landscape.json")).read_text())
    assert len(grid["loss_bits"]) == 3 and Path(next(outputs.rglob("loss_landscape.png"))).exists()
    info = json.loads(next(p for p in outputs.rglob("results.json") if "loss_landscape" in p.read_text())
                      .read_text())["info"]
    assert info["direction_norm"] == 0.5 and info["direction_norms"]["d1"] > 0
