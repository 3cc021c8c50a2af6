"""PTvsRI's OT fusion (llmlab.methods.fusion.ot), on tiny random mBART models.

ERRATA (PTvsRI): a release-faithful fusion recovers some kinds of permutation of a model's neurons and not
others. These tests show which: (a) the OT step alone recovers a permutation of one layer's neurons exactly;
(b) the release's order recovers a permutation whose consumer has no weights (q and k rows within heads: the
consumer is the score q·kᵀ), and not one whose consumer is a weight matrix (FFN hidden units: fc2; v units:
out_proj): the consumer's output-side plan is taken from activations computed before its input side is aligned.
Applying the input side first (`input_first`, not the paper's method) recovers those exactly. Neither recovers a
permutation of the residual stream: the embeddings are never aligned."""

import copy

import pytest
import torch

from llmlab.methods.fusion import ot as fusion


def tiny_mbart(seed=0):
    from transformers import MBartConfig, MBartForConditionalGeneration

    cfg = MBartConfig(vocab_size=40, d_model=16, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                      decoder_attention_heads=2, encoder_ffn_dim=24, decoder_ffn_dim=24, max_position_embeddings=32,
                      pad_token_id=1, bos_token_id=0, eos_token_id=2, dropout=0.0, attention_dropout=0.0)
    torch.manual_seed(seed)
    return MBartForConditionalGeneration(cfg).eval()


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 40, (6, 9), generator=g)
    dec = torch.randint(4, 40, (6, 7), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "decoder_input_ids": dec}


def logits(model, b):
    with torch.no_grad():
        return model(**b).logits


def layers(model):
    return list(model.model.encoder.layers) + list(model.model.decoder.layers)


@torch.no_grad()
def permute_ffn(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    for layer in layers(model):
        perm = torch.randperm(layer.fc1.out_features, generator=g)
        layer.fc1.weight.copy_(layer.fc1.weight[perm])
        layer.fc1.bias.copy_(layer.fc1.bias[perm])
        layer.fc2.weight.copy_(layer.fc2.weight[:, perm])


@torch.no_grad()
def permute_heads(model, seed=2):
    g = torch.Generator().manual_seed(seed)
    for layer in layers(model):
        for attn in [layer.self_attn] + ([layer.encoder_attn] if hasattr(layer, "encoder_attn") else []):
            h, d = attn.num_heads, attn.head_dim
            qk = torch.cat([torch.randperm(d, generator=g) + i * d for i in range(h)])
            v = torch.cat([torch.randperm(d, generator=g) + i * d for i in range(h)])
            for proj, perm in ((attn.q_proj, qk), (attn.k_proj, qk), (attn.v_proj, v)):
                proj.weight.copy_(proj.weight[perm])
                proj.bias.copy_(proj.bias[perm])
            attn.out_proj.weight.copy_(attn.out_proj.weight[:, perm])


@torch.no_grad()
def permute_qk(model, seed=4):
    """q and k rows within each head by one permutation (scores unchanged); v and out_proj left alone."""
    g = torch.Generator().manual_seed(seed)
    for layer in layers(model):
        for attn in [layer.self_attn] + ([layer.encoder_attn] if hasattr(layer, "encoder_attn") else []):
            h, d = attn.num_heads, attn.head_dim
            qk = torch.cat([torch.randperm(d, generator=g) + i * d for i in range(h)])
            for proj in (attn.q_proj, attn.k_proj):
                proj.weight.copy_(proj.weight[qk])
                proj.bias.copy_(proj.bias[qk])


@torch.no_grad()
def permute_residual(model, seed=3):
    perm = torch.randperm(model.config.d_model, generator=torch.Generator().manual_seed(seed))
    seen = set()
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Embedding):
            if id(m.weight) not in seen:   # the token embedding is shared by encoder, decoder and the output
                seen.add(id(m.weight))
                m.weight.copy_(m.weight[:, perm])
        elif isinstance(m, torch.nn.LayerNorm):
            m.weight.copy_(m.weight[perm])
            m.bias.copy_(m.bias[perm])
        elif isinstance(m, torch.nn.Linear) and name != "lm_head":
            if m.in_features == model.config.d_model:
                m.weight.copy_(m.weight[:, perm])
            if m.out_features == model.config.d_model:
                m.weight.copy_(m.weight[perm])
                m.bias.copy_(m.bias[perm])


def max_param_gap(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return max(float((sa[k] - sb[k]).abs().max()) for k in sa if sa[k].is_floating_point())


def test_transport_alone_recovers_a_permutation_of_neurons():
    torch.manual_seed(0)
    act = torch.randn(5, 11, 32)
    perm = torch.randperm(32)
    plan = fusion.transport(act[..., perm], act)
    assert plan.sum(0).eq(1).all() and plan.sum(1).eq(1).all()   # a 0/1 permutation matrix, one unit per neuron
    assert plan.argmax(1).tolist() == perm.tolist()             # neuron i of the permuted layer is neuron perm[i]
    same = fusion.transport(act, act)
    assert torch.equal(same, torch.eye(32, dtype=same.dtype))   # ties go to the identity


def aligned_copy(permute, input_first):
    original = tiny_mbart()
    permuted = copy.deepcopy(original)
    permute(permuted)
    b = batch()
    assert torch.allclose(logits(permuted, b), logits(original, b), atol=1e-5)   # the same function
    assert max_param_gap(permuted, original) > 0.1
    fused, aligned, facts = fusion.fuse_release(permuted, original, b, p0=0.1, input_first=input_first)
    model = copy.deepcopy(original)
    model.load_state_dict(fused)
    return original, aligned, model, b, facts


def test_release_fusion_recovers_a_permutation_whose_consumer_has_no_weights():
    original, aligned, fused, b, facts = aligned_copy(permute_qk, input_first=False)
    assert max_param_gap(aligned, original) < 1e-6
    assert torch.allclose(logits(fused, b), logits(original, b), atol=1e-5)
    assert facts["recomputes"] > 0 and facts["seconds_per_module"]


@pytest.mark.parametrize("permute", [permute_ffn, permute_heads])
def test_release_fusion_misses_ffn_and_value_permutations_and_input_first_recovers_them(permute):
    original, aligned, _, b, facts = aligned_copy(permute, input_first=False)
    assert max_param_gap(aligned, original) > 1e-2
    consumer = "model.encoder.layers.0." + ("fc2" if permute is permute_ffn else "self_attn.out_proj")
    # its input side is recovered; its output side (the residual stream, not permuted) is not left as it was
    assert facts["plans"][consumer]["input"] != list(range(len(facts["plans"][consumer]["input"])))
    assert facts["plans"][consumer]["output"] != list(range(16))
    original, aligned, fused, b, facts = aligned_copy(permute, input_first=True)
    assert max_param_gap(aligned, original) < 1e-6
    assert facts["plans"][consumer]["output"] == list(range(16))
    assert torch.allclose(logits(fused, b), logits(original, b), atol=1e-5)


def test_release_fusion_does_not_recover_a_residual_stream_permutation():
    original = tiny_mbart()
    permuted = copy.deepcopy(original)
    permute_residual(permuted)
    b = batch()
    assert torch.allclose(logits(permuted, b), logits(original, b), atol=1e-5)
    for input_first in (False, True):
        _, aligned, facts = fusion.fuse_release(permuted, original, b, p0=0.1, input_first=input_first)
        assert max_param_gap(aligned, original) > 0.1
        assert not torch.allclose(logits(aligned, b), logits(original, b), atol=1e-3)
    # the first layer norm after the (never aligned) embeddings gets the permutation back on its output side ...
    first = "model.encoder.layernorm_embedding"
    assert facts["plans"][first]["output"] != list(range(16))
    assert "input" not in facts["plans"][first]


def test_fused_weights_are_p0_aligned_plus_one_minus_p0_model1_with_model1_embeddings():
    ri, pt = tiny_mbart(seed=0), tiny_mbart(seed=5)
    b = batch()
    fused, aligned, _ = fusion.fuse_release(ri, pt, b, p0=0.1)
    key = "model.encoder.layers.0.fc1.weight"
    assert torch.allclose(fused[key], 0.1 * aligned.state_dict()[key] + 0.9 * pt.state_dict()[key])
    for key in ("model.shared.weight", "model.encoder.embed_positions.weight", "model.decoder.embed_positions.weight"):
        assert torch.equal(fused[key], pt.state_dict()[key])
    # q, k and v of one attention are aligned on their own outputs: their plans may differ for different models
    plans = _ = fusion.fuse_release(ri, pt, b, p0=0.1)[2]["plans"]
    attn = "model.encoder.layers.0.self_attn"
    assert {f"{attn}.q_proj", f"{attn}.k_proj", f"{attn}.v_proj"} <= set(plans)
    avg = fusion.average(ri, pt, 0.0)
    assert all(torch.equal(avg[k], v) for k, v in pt.state_dict().items())
