"""The ft (FT-L / FT-M) and ike editors on tiny models."""

from __future__ import annotations

import pytest
import torch

from llmlab import models
from llmlab.errors import UserError
from llmlab.capabilities import EditRequest
from llmlab.models.probes import prompt_target_ids

TINY_ENCODER = {"name": "tiny-encoder", "source": "tiny", "kind": "encoder"}  # as model@method.encoder=tiny-encoder
from llmlab.methods.editing.ft import FT
from llmlab.methods.editing.ike import IKE, demonstrations_of


@pytest.fixture(scope="module")
def tiny_lm():
    return models.load({"source": "tiny", "arch": "llama"})


REQ = EditRequest(prompt="The capital of France is", subject="France", target_new="Berlin")


def target_logprob(lm, request: EditRequest) -> float:
    ids, n = prompt_target_ids(lm.tokenizer, request.prompt, request.target_new)
    with torch.no_grad():
        logp = torch.log_softmax(lm.model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
    return sum(logp[i - 1, ids[i]].item() for i in range(n, len(ids)))


def state(lm):
    return {k: v.detach().clone() for k, v in lm.model.state_dict().items()}


@pytest.mark.parametrize("objective", ["prompt_last", "target_new"])
def test_ft_raises_target_probability_and_restores_bit_for_bit(tiny_lm, objective):
    before, lp0 = state(tiny_lm), target_logprob(tiny_lm, REQ)
    grads = {n: p.requires_grad for n, p in tiny_lm.model.named_parameters()}
    ft = FT(objective=objective, num_steps=10, lr=5e-3)
    with ft.edit(tiny_lm, [REQ]) as edited:
        assert edited is tiny_lm
        assert target_logprob(tiny_lm, REQ) > lp0 + 0.5
        name = ft.parameter_names(tiny_lm.model)[0]
        assert name == "model.layers.3.mlp.down_proj.weight"  # round(21/32 * 4) = 3
        changed = [k for k, v in tiny_lm.model.state_dict().items() if not torch.equal(v, before[k])]
        assert changed == [name]  # only the chosen down_proj moved
    assert ft.last_losses[-1] < ft.last_losses[0]
    after = state(tiny_lm)
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert target_logprob(tiny_lm, REQ) == lp0
    assert {n: p.requires_grad for n, p in tiny_lm.model.named_parameters()} == grads


def test_ft_restores_when_the_block_raises(tiny_lm):
    before = state(tiny_lm)
    with pytest.raises(RuntimeError):
        with FT(num_steps=2, lr=1e-2).edit(tiny_lm, [REQ]):
            raise RuntimeError("boom")
    assert all(torch.equal(v, before[k]) for k, v in tiny_lm.model.state_dict().items())


def test_ft_norm_constraint_bounds_the_change(tiny_lm):
    ft = FT(num_steps=5, lr=1e-2, norm_constraint=1e-4, layers=[1])
    name = ft.parameter_names(tiny_lm.model)[0]
    w0 = dict(tiny_lm.model.named_parameters())[name].detach().clone()
    with ft.edit(tiny_lm, [REQ]):
        w = dict(tiny_lm.model.named_parameters())[name]
        delta = (w - w0).abs().max().item()
        assert 0 < delta <= 1e-4 + 1e-7


def test_ft_batched_requests_and_layer_validation(tiny_lm):
    reqs = [REQ, EditRequest(prompt="The sky is", subject="sky", target_new="green")]
    ft = FT(num_steps=3, lr=1e-2, batch_size=2, objective="target_new")
    with ft.edit(tiny_lm, reqs):
        assert len(ft.last_losses) >= 1
    with pytest.raises(UserError, match=r"out of range .* 4 layers"):
        FT(layers=[21]).parameter_names(tiny_lm.model)
    with pytest.raises(UserError, match="objective"):
        FT(objective="ft-x")
    with pytest.raises(UserError, match="module_template"):
        FT(module_template="layers.{}.mlp.c_proj.weight").parameter_names(tiny_lm.model)


# -- IKE ------------------------------------------------------------------------------------------
def pool_request(i: int) -> EditRequest:
    return EditRequest(prompt=f"Q{i} prompt", subject=f"S{i}", target_new=f"T{i}",
                       extra={"case_id": i, "rephrase": f"R{i}", "loc": f"L{i}", "loc_ans": f"A{i}"})


def test_ike_demonstrations_are_copy_update_retain():
    assert demonstrations_of(pool_request(3)) == [
        "New Fact: Q3 prompt T3\nPrompt: Q3 prompt T3\n\n",
        "New Fact: Q3 prompt T3\nPrompt: R3 T3\n\n",
        "New Fact: Q3 prompt T3\nPrompt: L3 A3\n\n",
    ]


def test_ike_builds_the_exact_prompt(tiny_lm):
    ike = IKE(k=0, encoder=TINY_ENCODER)
    req = EditRequest(prompt="Who is the CEO of Apple?", subject="Apple", target_new="Tim Cook")
    with ike.edit(tiny_lm, [req]) as edited:
        assert edited is tiny_lm
        assert ike.prompt_for(tiny_lm, "Who leads Apple?", [req]) == \
            "New Fact: Who is the CEO of Apple? Tim Cook\nPrompt: Who leads Apple?"


def test_ike_retrieves_k_demonstrations_from_other_cases(tiny_lm):
    before = {k: v.clone() for k, v in tiny_lm.model.state_dict().items()}
    ike = IKE(k=4, encoder=TINY_ENCODER)
    pool = [pool_request(i) for i in range(5)]
    ike.prepare_demonstrations(tiny_lm, pool)
    assert len(ike._pool_sentences) == 15
    req = pool[2]
    with ike.edit(tiny_lm, [req]):
        prompt = ike.prompt_for(tiny_lm, "R2", [req])
    parts = prompt.split("\n\n")
    demos, tail = parts[:-1], parts[-1]
    assert tail == "New Fact: Q2 prompt T2\nPrompt: R2"
    assert len(demos) == 4 and all("Q2 prompt T2" not in d for d in demos)  # own case left out
    pool_set = {s.rstrip("\n") for s in ike._pool_sentences}
    assert all(d in pool_set for d in demos)
    # ranked by dot score of normalized embeddings, best first
    enc = ike.sentence_encoder()
    q = enc.encode(["New Fact: Q2 prompt T2\nPrompt: Q2 prompt T2\n\n"])[0]
    scores = [float(enc.encode([d + "\n\n"])[0] @ q) for d in demos]
    assert scores == sorted(scores, reverse=True)
    assert all(torch.equal(v, before[k]) for k, v in tiny_lm.model.state_dict().items())


def test_ike_batched_edits_show_the_most_similar_facts(tiny_lm):
    ike = IKE(k=0, encoder=TINY_ENCODER, max_facts=2)
    reqs = [pool_request(i) for i in range(5)]
    with ike.edit(tiny_lm, reqs):
        prompt = ike.prompt_for(tiny_lm, "Q3 prompt", reqs)
    lines = prompt.split("\n")
    assert len(lines) == 3 and lines[-1] == "Prompt: Q3 prompt"
    assert all(line.startswith("New Fact: Q") for line in lines[:2])


def test_ike_encoder_that_is_not_an_encoder_is_a_clear_error():
    with pytest.raises(UserError, match="method.encoder must be an encoder model config"):
        IKE(encoder={"name": "tiny-llama", "source": "tiny", "arch": "llama"}).sentence_encoder()
