"""Quantizing a fine-tuned encoder: fake quantization (levels, straight-through gradients, the integers a
deployment stores, a real int8 matmul beside it), PTQ / QAT / ZSAQ as transforms of the model task=glue
fine-tuned, the shared full-precision fine-tune, and the errors before any model loads."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from llmlab.errors import UserError
from llmlab.methods.quant.fake_quant import (QuantLinear, fake_quant_per_tensor, fake_quant_per_token, quantize_linears,
                                             weight_bytes, weight_scales)
from llmlab.methods.quant.ptq import PTQ, divergence
from llmlab.methods.quant.zeroquant import ZeroQuant
from llmlab.methods.quant.qat import QAT, random_inputs
from llmlab.methods.quant.gptq import GPTQ
from llmlab.methods.quant.zsaq import ZSAQ
from llmlab.training.finetune import TaskData


def test_fake_quant_levels_and_straight_through_gradient():
    torch.manual_seed(0)
    lin = torch.nn.Linear(16, 6)
    for bits, levels in ((2, 3), (4, 15)):
        q = QuantLinear(lin, bits, 8)
        ints, scale = q.int_weight()
        assert all(len(torch.unique(row)) <= levels for row in ints)                  # narrow symmetric range
        assert ints.abs().max() == 2 ** (bits - 1) - 1                                # the absmax maps to the top
        w_fake = torch.fake_quantize_per_channel_affine(lin.weight, scale, torch.zeros(6, dtype=torch.int32), 0,
                                                        -(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1)
        assert torch.allclose(ints.float() * scale[:, None], w_fake, atol=1e-6)        # what a deployment stores
    x = torch.randn(4, 16, requires_grad=True)
    fake_quant_per_tensor(x, 8).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))                                     # straight through
    assert (fake_quant_per_tensor(x.detach(), 8) - x.detach()).abs().max() <= x.detach().abs().max() / 127 / 2 + 1e-6



def test_zeroquant_token_wise_activations_and_row_groups():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 16)
    x[0, 0] *= 100                                                     # one outlier token
    per_tensor = (fake_quant_per_tensor(x, 8) - x)[0, 1:].abs().max()
    per_token = (fake_quant_per_token(x, 8) - x)[0, 1:].abs().max()
    assert per_token < per_tensor / 10                                 # the other tokens keep their precision
    w = torch.randn(8, 4)
    grouped = weight_scales(w, 4, group_rows=4)
    assert torch.equal(grouped[:4], grouped[:1].expand(4)) and torch.equal(grouped[4:], grouped[4:5].expand(4))
    assert torch.allclose(grouped[:4].max(), weight_scales(w, 4)[:4].max())
    for steps in (0, 8):
        model, tok = _encoder()
        fp = copy.deepcopy(model).eval()
        data = _data(tok)
        data.special_ids = {"cls": 1, "sep": 2, "pad": 0}
        method = ZeroQuant(w_bits=2, a_bits=8, group_rows=4, lkd_steps=steps, lkd_lr=1e-3, batch_size=4, seq_length=8)
        out = method.after_finetune(model, data, _Ctx())
        layer = next(m for m in out.modules() if isinstance(m, QuantLinear))
        assert layer.per_token and layer.group_rows == 4
        ids = {"input_ids": torch.randint(5, 500, (4, 8), generator=torch.Generator().manual_seed(1))}
        with torch.no_grad():
            gap = float((out.bert(**ids).last_hidden_state - fp.bert(**ids).last_hidden_state).pow(2).mean())
        if steps == 0:
            no_lkd = gap
            assert "lkd_steps_per_block" not in method.report()
        else:  # LKD pulls the quantized encoder's hidden states toward the full-precision ones
            assert gap < no_lkd and method.report()["lkd_mse_last"] < method.report()["lkd_mse_first"]

def test_w8a8_fake_quant_matches_a_real_int8_matmul():
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 32, bias=False)
    q = QuantLinear(lin, 8, 8)
    x = torch.randn(32, 64)
    fake = q(x)
    s_x = x.abs().max() / 127
    x_int = torch.clamp(torch.round(x / s_x), -127, 127).to(torch.int8)
    w_int, s_w = q.int_weight()
    real = torch._int_mm(x_int, w_int.T.contiguous()).float() * s_x * s_w[None, :]
    assert torch.allclose(fake, real, rtol=1e-4, atol=1e-4)
    assert (fake - lin(x)).abs().max() > 1e-4          # and it is not the fp32 layer



def test_gptq_rounds_with_less_output_error_than_round_to_nearest():
    from llmlab.models.activations import SecondMoment

    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 16, bias=False)
    x = torch.randn(512, 64) @ torch.randn(64, 64) * 0.3      # correlated inputs: where GPTQ's updates pay
    rtn = QuantLinear(copy.deepcopy(lin), 3, 32)
    gptq = QuantLinear(copy.deepcopy(lin), 3, 32)
    stats = SecondMoment(64)
    stats.add(x, samples=512)
    GPTQ(w_bits=3, blocksize=16).quantize_linear(gptq, stats)
    ints, scale = gptq.int_weight()
    assert torch.allclose(ints.float() * scale[:, None], gptq.weight.detach(), atol=1e-6)   # on its fixed grid
    with torch.no_grad():
        err = lambda q: float((q(x) - lin(x)).pow(2).mean())
        assert err(gptq) < 0.8 * err(rtn)

def _encoder():
    from llmlab.models.heads import with_head
    from llmlab.models.lm import LM
    from llmlab.models.tiny import tiny_encoder

    model, tok = tiny_encoder(seed=0, hidden_size=32)
    return with_head(LM(model=model, tokenizer=tok, name="tiny-encoder", spec={"kind": "encoder"}), 3, seed=0), tok


def _data(tok, regression=False):
    gen = torch.Generator().manual_seed(0)

    def batches(epoch):
        for _ in range(4):
            yield {"input_ids": torch.randint(5, 500, (8, 12), generator=gen), "attention_mask": torch.ones(8, 12,
                   dtype=torch.long), "labels": torch.zeros(8, dtype=torch.long)}

    return TaskData(batches=batches, steps_per_epoch=4, batch_size=8, max_length=32, vocab_size=len(tok),
                    special_ids={"cls": tok.cls_token_id, "sep": tok.sep_token_id, "pad": tok.pad_token_id},
                    regression=regression, device=torch.device("cpu"))


class _Ctx:
    seed = 0


def test_ptq_quantizes_the_block_linears_only_and_counts_bytes():
    model, tok = _encoder()
    method = PTQ(w_bits=4, a_bits=8)
    out = method.after_finetune(model, _data(tok), _Ctx())
    quantized = [m for m in out.modules() if isinstance(m, QuantLinear)]
    assert len(quantized) == 2 * 6                                   # 2 blocks x (q, k, v, o, ffn in, ffn out)
    assert not isinstance(out.classifier, QuantLinear) and not isinstance(out.bert.pooler.dense, QuantLinear)
    f = method.report()
    linear_params = sum(m.weight.numel() for m in quantized)
    assert f["fp32_bytes"] - f["quantized_bytes"] == pytest.approx(linear_params * (4 - 0.5) - 4 * sum(
        m.out_features for m in quantized), abs=2)


def test_qat_moves_the_quantized_model_toward_the_full_precision_one():
    model, tok = _encoder()
    with torch.no_grad():
        model.classifier.weight.mul_(200)  # a fresh head is near uniform: make the outputs depend on the input
    fp = copy.deepcopy(model).eval()
    batch = {"input_ids": torch.randint(5, 500, (8, 12), generator=torch.Generator().manual_seed(0)),
             "attention_mask": torch.ones(8, 12, dtype=torch.long)}
    data = _data(tok)
    data.batches = lambda epoch: iter([dict(batch, labels=torch.zeros(8, dtype=torch.long))] * 4)
    ptq = PTQ(w_bits=2, a_bits=8).after_finetune(copy.deepcopy(model), data, _Ctx())
    method = QAT(w_bits=2, a_bits=8, data="real", steps=5, learning_rate=1e-5)
    out = method.after_finetune(model, data, _Ctx())
    with torch.no_grad():
        before = float(divergence(fp(**batch).logits, ptq(**batch).logits, False))
        after = float(divergence(fp(**batch).logits, out(**batch).logits, False))
    assert after < 0.5 * before and method.report()["steps"] == 5
    data.special_ids = {"cls": 1, "sep": 2, "pad": 0}
    rand = random_inputs(data, 4, 10, torch.Generator().manual_seed(0))
    assert rand["input_ids"].shape == (4, 10) and (rand["input_ids"][:, 0] == 1).all()
    assert (rand["input_ids"][:, -1] == 2).all() and (rand["input_ids"][:, 1:-1] > 2).all()


@pytest.mark.parametrize("sam", [True, False])
def test_zsaq_alternates_descent_on_the_quantized_model_and_ascent_on_the_generator(sam, monkeypatch):
    from llmlab import models
    from llmlab.models.tiny import tiny_causal_lm

    def load_tiny(spec, device="cpu", dtype=None, seed=0):
        from llmlab.models.lm import LM

        m, t = tiny_causal_lm("llama", seed)
        return LM(model=m, tokenizer=t, name="tiny-llama", spec=dict(spec))

    monkeypatch.setattr(models, "load", load_tiny)
    model, tok = _encoder()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    method = ZSAQ(generator={"name": "tiny-llama"}, sam=sam, steps=3, batch_size=4, seq_length=8,
                  learning_rate=1e-3, generator_lr=1e-2, generator_train="adapter")
    out = method.after_finetune(model, _data(tok), _Ctx())
    f = method.report()
    assert f["steps"] == 3 and f["optimizer"] == ("ZSAQ (SAM-SGA)" if sam else "ZSAQ w/o SAM (SGDA)")
    moved = [n for n, p in out.named_parameters() if not torch.equal(before[n], p.detach())]
    assert any("attention" in n for n in moved)                       # the quantized model descended
    assert all(p.requires_grad for p in out.parameters())             # the ascent step's freeze is undone
    assert f["adapter"].endswith("-> 32") and f["adapter_moved"] > 0  # the generator's side ascended


def test_bad_settings_and_tasks_are_refused():
    with pytest.raises(UserError, match="2..8 bits"):
        PTQ(w_bits=1)
    with pytest.raises(UserError, match="real.*random"):
        QAT(data="imagenet")
    with pytest.raises(UserError, match="no generator"):
        ZSAQ(generator={}).check()
    with pytest.raises(UserError, match="generator_train"):
        ZSAQ(generator_train="half")


def test_glue_quantizes_the_shared_full_precision_fine_tune(tmp_path, llmlab_inproc, outputs, monkeypatch):
    from llmlab.fixtures import glue as fixture

    monkeypatch.setenv("LLMLAB_CACHE", str(tmp_path / "cache"))  # a fresh cache: the first fine-tune is not reused
    fixture.write(tmp_path / "glue")
    common = ["task=glue", "model=tiny-encoder", "task.subset=rte", f"task.data_dir={tmp_path / 'glue'}",
              "task.epochs=1", "task.batch_size=8", "task.max_length=32", "task.flops_length=32", "task.cache_finetune=true",
              "logger=none"]
    for method in ("none", "ptq", "gptq", "zsaq_sgda"):
        extra = ["model@method.generator=tiny-llama", "method.steps=2", "method.batch_size=4",
                 "method.seq_length=8"] if method.startswith("zsaq") else []
        code, out, err = llmlab_inproc(f"method={method}", *common, *extra)
        assert code == 0, err[-3000:]
    results = {r["choices"]["method"]: r for r in (json.loads(p.read_text()) for p in outputs.rglob("results.json"))}
    assert results["none"]["info"]["fine_tuned_reused"] is False
    assert results["ptq"]["info"]["fine_tuned_reused"] is True and results["zsaq_sgda"]["info"]["fine_tuned_reused"]
    assert results["ptq"]["method_info"]["setting"] == "W4A8" and results["zsaq_sgda"]["method_info"]["steps"] == 2
    assert results["gptq"]["method_info"]["gptq_linears"] == 12 and results["gptq"]["info"]["fine_tuned_reused"]
    assert "glue_task_score@best_epoch" in results["none"]["metrics"]
    assert "glue_task_score@best_epoch" not in results["ptq"]["metrics"]   # the per-epoch scores are the FP model's
    code, out, err = llmlab_inproc("method=ptq", "task=wikitext2_ppl", "model=tiny-llama", "logger=none")
    assert code != 0 and "ptq" in (out + err)
