"""Pruning on a tiny llama: the sparsity reached (Wanda exact per row; magnitude and SparseGPT one weight
over per threshold group, as released), the N:M pattern, SparseGPT reconstructing a layer's outputs
better than magnitude at the same sparsity, and `llmlab run` end to end."""

from __future__ import annotations

import json

import pytest
import torch

from llmlab.methods.pruning.magnitude import Magnitude
from llmlab.methods.pruning.sparsegpt import SparseGPT
from llmlab.methods.pruning.wanda import Wanda
from llmlab.models import anatomy
from llmlab.models.activations import SecondMoment


class Ctx:
    seed = 0


def _lm(tiny_lm):
    import copy

    lm = copy.copy(tiny_lm)
    lm.model = copy.deepcopy(tiny_lm.model)
    return lm


def test_wanda_prunes_exactly_half_of_every_row_and_the_released_thresholds_one_more(tiny_lm):
    lm = Wanda(nsamples=4, seqlen=64, cache=False).prepare(_lm(tiny_lm), Ctx())
    for blk in anatomy.blocks(lm.model):
        for m in anatomy.linears(blk).values():
            assert ((m.weight == 0).sum(1) == m.in_features // 2).all()
    mag = Magnitude(cache=False)
    lm2 = mag.prepare(_lm(tiny_lm), Ctx())
    for name, frac in mag.report()["sparsity_per_layer"].items():
        block, key = name.split(".", 1)
        numel = anatomy.linears(anatomy.blocks(lm2.model)[int(block)])[key].weight.numel()
        assert frac == pytest.approx((int(numel * 0.5) + 1) / numel)  # sort(...)[int(numel*s)] and `<=`


def test_two_four_pattern(tiny_lm):
    lm = Wanda(nsamples=2, seqlen=32, prune_n=2, prune_m=4, cache=False).prepare(_lm(tiny_lm), Ctx())
    w = anatomy.linears(anatomy.blocks(lm.model)[0])["mlp.down_proj"].weight
    assert ((w.reshape(w.shape[0], -1, 4) == 0).sum(-1) == 2).all()


def test_sparsegpt_and_wanda_reconstruct_the_layer_better_than_magnitude():
    torch.manual_seed(0)
    x = torch.randn(512, 64) * torch.linspace(0.1, 5, 64)  # input features of unequal scale, as real activations
    layer = torch.nn.Linear(64, 32, bias=False)
    stats = SecondMoment(64, "cpu", True)
    stats.add(x, samples=1)
    errors = {}
    for pruner in (SparseGPT(cache=False), Magnitude(cache=False), Wanda(cache=False)):
        lin = torch.nn.Linear(64, 32, bias=False)
        lin.weight.data.copy_(layer.weight.data)
        pruner.prune_linear(lin, stats)
        assert (lin.weight == 0).float().mean() >= 0.5
        errors[pruner.name] = (lin(x) - layer(x)).pow(2).mean().item()
    assert errors["sparsegpt"] < 0.7 * errors["magnitude"] and errors["wanda"] < 0.7 * errors["magnitude"]


def test_llmlab_run_prunes_then_scores(llmlab_inproc, outputs):
    code, out, err = llmlab_inproc("method=sparsegpt", "model=tiny-llama", "task=perplexity", "method.nsamples=2",
                                   "method.seqlen=32", "task.max_tokens=256", "logger=none")
    assert code == 0, err
    info = json.loads(next(outputs.rglob("results.json")).read_text())["method_info"]
    assert info["pruner"] == "sparsegpt" and 0.5 <= info["sparsity"] < 0.51 and len(info["seconds_per_block"]) > 0
