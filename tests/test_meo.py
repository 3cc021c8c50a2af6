"""MoE and MEO on an encoder's FFN projections: the gate, the two ways of applying the experts (and where they
compute the same function), the rebuilt encoder's starting point, the balance loss reaching the fine-tuning
loss, FLOPs counted on the real forward, and `llmlab run` end to end."""

from __future__ import annotations

import json
import math

import pytest
import torch

from llmlab.errors import UserError
from llmlab.methods.moe.gating import balance_loss, cv_squared, noisy_top_k
from llmlab.methods.moe.layers import MEOLinear, MoELinear, TaskEmbedding
from llmlab.methods.moe.meo import MergingExpertsIntoOne, MixtureOfExperts
from llmlab.models.flops import forward_flops


def _pair(level: str, k: int = 2, n_experts: int = 4, seed: int = 0):
    """A MoE and an MEO layer with the same (randomised) experts and gate."""
    torch.manual_seed(seed)
    weight = torch.randn(6, 5)
    task = TaskEmbedding([3, 4, 5], vocab_size=10, size=8) if level == "task" else None
    moe = MoELinear(weight, n_experts, k, level, task=task, reduce_factor=2)
    meo = MEOLinear(weight, n_experts, k, level, task=task, reduce_factor=2)
    with torch.no_grad():
        moe.weight.normal_()
        moe.w_gate.normal_()
        moe.w_noise.normal_()
        meo.load_state_dict(moe.state_dict(), strict=False)
    return moe, meo


def test_gate_keeps_k_experts_per_row_summing_to_one():
    torch.manual_seed(0)
    x, w_gate, w_noise = torch.randn(7, 5), torch.randn(5, 6), torch.randn(5, 6)
    for noisy in (False, True):
        gates, load = noisy_top_k(x, w_gate, w_noise, k=3, noisy=noisy)
        assert ((gates > 0).sum(-1) == 3).all() and torch.allclose(gates.sum(-1), torch.ones(7))
        assert load.shape == (6,)
    clean, _ = noisy_top_k(x, w_gate, w_noise, k=3, noisy=False)
    assert torch.equal((clean > 0), torch.zeros_like(clean, dtype=torch.bool).scatter(1, (x @ w_gate).topk(3).indices, True))
    assert float(cv_squared(torch.tensor([2.0, 2.0, 2.0]))) == 0.0
    assert math.isclose(float(cv_squared(torch.tensor([1.0, 3.0]))), 2.0 / 4.0, rel_tol=1e-6)  # var 2 (unbiased), mean 2
    balanced = torch.full((4, 4), 0.25)
    assert float(balance_loss(balanced, balanced.sum(0))) == 0.0
    # the smooth load estimator carries gradient to the noise weights (the release trains w_noise through it)
    w_noise.requires_grad_(True)
    gates, load = noisy_top_k(x, w_gate, w_noise, k=3, noisy=True)
    balance_loss(gates, load).backward()
    assert w_noise.grad is not None and w_noise.grad.abs().sum() > 0


@pytest.mark.parametrize("level", ["sequence", "task"])
def test_moe_and_meo_compute_the_same_function_at_sequence_and_task_level(level):
    moe, meo = _pair(level)
    x = torch.randn(3, 4, 5)
    moe.eval(), meo.eval()
    assert torch.allclose(moe(x), meo(x), atol=1e-5)
    assert torch.equal(moe.last_gates, meo.last_gates)
    moe.train(), meo.train()
    torch.manual_seed(1)
    y_moe = moe(x)
    torch.manual_seed(1)
    y_meo = meo(x)                                          # the same noise draw: the same experts and gates
    assert torch.allclose(y_moe, y_meo, atol=1e-5) and torch.allclose(moe.aux_loss, meo.aux_loss)


def test_vanilla_dispatch_equals_the_dense_mixture_and_token_level_differs():
    moe, meo = _pair("token", k=2, n_experts=4)
    moe.eval(), meo.eval()
    x = torch.randn(2, 3, 5)
    y = moe(x)
    gates = moe.last_gates                                   # one row per token
    dense = torch.einsum("ne,eoi,ni->no", gates, moe.weight, x.reshape(-1, 5)).reshape(2, 3, 6)
    assert gates.shape == (6, 4) and torch.allclose(y, dense, atol=1e-5)
    y_meo = meo(x)
    assert meo.last_gates.shape == (2, 4)                    # MEO merges once per sequence
    assert not torch.allclose(y, y_meo, atol=1e-3)           # token level: a different function


def test_meo_gathered_merge_equals_the_dense_merge():
    torch.manual_seed(0)
    few = MEOLinear(torch.randn(6, 5), n_experts=8, k=2, level="sequence")      # 2k < E: the release gathers
    with torch.no_grad():
        few.weight.normal_()
        few.w_gate.normal_()
    x = torch.randn(3, 4, 5)
    few.eval()
    y = few(x)
    dense = torch.einsum("bti,boi->bto", x, torch.einsum("be,eoi->boi", few.last_gates, few.weight))
    assert torch.allclose(y, dense, atol=1e-5)


def _tiny_lm():
    from llmlab.models.lm import LM
    from llmlab.models.tiny import tiny_encoder

    model, tok = tiny_encoder(seed=0, hidden_size=32)
    return LM(model=model, tokenizer=tok, name="tiny-encoder", spec={"kind": "encoder"})


class _Ctx:
    seed = 0


@pytest.mark.parametrize("cls,level", [(MixtureOfExperts, "sequence"), (MergingExpertsIntoOne, "task")])
def test_rebuilt_encoder_starts_as_the_pretrained_one_without_ffn_biases(cls, level):
    lm = _tiny_lm()
    ids = torch.tensor([[5, 9, 14, 3, 7]])
    with torch.no_grad():
        for layer in lm.model.encoder.layer:
            layer.intermediate.dense.bias.zero_()
            layer.output.dense.bias.zero_()
        want = lm.model(input_ids=ids).last_hidden_state
    method = cls(n_experts=4, k=2, level=level, task_description="rte")
    method.check()
    method.prepare(lm, _Ctx())
    assert method.report()["routed_layers"] == 4 and isinstance(lm.model.encoder.layer[0].output.dense, method.layer_class)
    with torch.no_grad():
        got = lm.model(input_ids=ids).last_hidden_state
    assert torch.allclose(got, want, atol=1e-5)
    assert "moe_task_embedding" in dict(lm.model.named_children()) or level != "task"


def test_balance_loss_enters_the_fine_tuning_loss_and_trains_the_gate():
    from llmlab.training.finetune import FineTuneSettings, fine_tune

    lm = _tiny_lm()
    MixtureOfExperts(n_experts=4, k=2, level="sequence").prepare(lm, _Ctx())
    model = lm.model
    batch = {"input_ids": torch.randint(5, 100, (4, 6))}

    def loss_fn(m, b):
        return m(**b).last_hidden_state.pow(2).mean(dim=(1, 2))

    gate = model.encoder.layer[0].intermediate.dense.w_gate
    before = gate.detach().clone()
    run = fine_tune(model, loss_fn, lambda e: iter([batch, batch]), 2,
                    FineTuneSettings(epochs=1, learning_rate=1e-2, batch_size=4, logging_steps=1, warmup_ratio=0.0))
    logged = [h for h in run["history"] if "aux_loss" in h]
    assert len(logged) == 2 and all(h["aux_loss"] >= 0 for h in logged)
    assert not torch.equal(before, gate.detach())


def test_flops_counted_grow_with_k_for_moe_and_stay_nearly_flat_for_meo():
    ids = {"input_ids": torch.randint(5, 100, (1, 64))}
    flops = {}
    for cls in (MixtureOfExperts, MergingExpertsIntoOne):
        for k in (1, 4):
            lm = _tiny_lm()
            cls(n_experts=8, k=k, level="sequence").prepare(lm, _Ctx())
            flops[cls.name, k] = forward_flops(lm.model, ids)
    dense = forward_flops(_tiny_lm().model, ids)
    ffn = 2 * 2 * 64 * 32 * 64 * 2                 # 2 layers x 2 projections x 2 FLOPs x T x d x 2d
    gate = 2 * 2 * (32 + 64) * 8                    # the gate's matmul on each projection's sequence mean
    assert flops["moe", 1] == dense + gate          # one expert per sequence: the dense FFN's matmuls
    assert flops["moe", 4] - flops["moe", 1] == 3 * ffn   # every further expert: the FFN's matmuls again
    merge = flops["meo", 4] - flops["meo", 1]      # MEO: only the merge grows (k, or all E when 2k >= E, x d x 2d)
    assert 0 < merge <= 2 * 2 * 2 * 8 * 32 * 64 and flops["meo", 4] < 1.2 * dense


def test_bad_settings_are_refused_before_loading():
    with pytest.raises(UserError, match="routes at sequence, task, token"):
        MixtureOfExperts(level="expert")
    with pytest.raises(UserError, match="between 1 and method.n_experts"):
        MergingExpertsIntoOne(n_experts=4, k=6)
    with pytest.raises(UserError, match="task_description"):
        MergingExpertsIntoOne(level="task", task_description=None).check()


@pytest.mark.parametrize("method,level", [("meo", "token"), ("moe", "task")])
def test_glue_runs_end_to_end_with_experts(tmp_path, llmlab_inproc, outputs, method, level):
    from llmlab.fixtures import glue as fixture

    fixture.write(tmp_path / "glue")
    code, out, err = llmlab_inproc(f"method={method}", "task=glue", "model=tiny-encoder", "task.subset=rte",
                                   f"task.data_dir={tmp_path / 'glue'}", "task.epochs=1", "task.batch_size=8",
                                   "task.max_length=32", "task.flops_length=32", "method.n_experts=4", "method.k=2",
                                   f"method.level={level}", "logger=none")
    assert code == 0, err[-3000:]
    res = json.loads(next(outputs.rglob("results.json")).read_text())
    assert res["method_info"]["routed_layers"] == 4 and res["method_info"]["level"] == level
    assert res["metrics"]["gflops"] > 0 and math.isfinite(res["metrics"]["glue_task_score"])
    log = (next(outputs.rglob("results.json")).parent / "train_log.csv").read_text()
    assert "aux_loss" in log


@pytest.mark.parametrize("cls", [MixtureOfExperts, MergingExpertsIntoOne])
def test_expert_bias_keeps_the_pretrained_function_exactly(cls):
    lm = _tiny_lm()
    ids = torch.tensor([[5, 9, 14, 3, 7], [8, 8, 2, 4, 6]])
    with torch.no_grad():
        want = lm.model(input_ids=ids).last_hidden_state
    cls(n_experts=4, k=2, level="sequence", expert_bias=True).prepare(lm, _Ctx())
    layer = lm.model.encoder.layer[1].intermediate.dense
    assert layer.bias is not None and layer.bias.shape == (4, layer.out_features)
    with torch.no_grad():
        got = lm.model(input_ids=ids).last_hidden_state
    assert torch.allclose(got, want, atol=1e-5)


def test_a_causal_lm_is_refused_before_loading(llmlab_inproc, outputs):
    code, out, err = llmlab_inproc("method=meo", "method.level=sequence", "model=tiny-llama", "task=wikitext2_ppl",
                                   "logger=none")
    assert code != 0 and "FFN projections of BERT-style encoders" in (out + err)
    record = json.loads(next(outputs.rglob("failed.json")).read_text())
    assert record["status"] == "failed" and "load_model" not in (record.get("timings_s") or {})
