"""ROME and MEMIT: the closed-form updates against direct solutions, edits that raise the new
target's probability on tiny llama/gemma3/qwen2 models, exact restore, batches, clear errors."""

from __future__ import annotations

import pytest
import torch

from llmlab import models
from llmlab.errors import UserError
from llmlab.methods.editing import _rank_update as ru
from llmlab.capabilities import EditRequest
from llmlab.methods.editing.memit import MEMIT
from llmlab.methods.editing.memit import default_layers as memit_default_layers
from llmlab.methods.editing.rome import ROME
from llmlab.methods.editing.rome import default_layers as rome_default_layers

# Tiny random models have MLP outputs of norm ~0.02, so the paper's lr 0.5 on a delta clamped to
# 4x that norm only jitters; these settings suit their scale (the mechanics are the same).
TINY = dict(v_lr=0.05, clamp_norm_factor=40.0, v_weight_decay=0.0, context_template_length_params=[])

REQUESTS = [
    EditRequest("The capital of France is", "France", "Rome"),
    EditRequest("The mother tongue of Danielle is", "Danielle", "English"),
    EditRequest("The file system of Linux uses", "Linux", "paths"),
]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread (and do not fight other jobs for cores)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def fresh_memory_cache():
    ru._MOM2_CACHE.clear()


def tiny(arch="llama"):
    return models.load({"source": "tiny", "arch": arch, "name": f"tiny-{arch}"})


def target_logprob(lm, prompt: str, target: str) -> float:
    """Teacher-forced log-probability of the target's tokens after the prompt."""
    head = lm.tokenizer(prompt)["input_ids"]
    tgt = ru.target_ids(lm.tokenizer, prompt, target)
    with torch.no_grad():
        logits = lm.model(input_ids=torch.tensor([head + tgt])).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    return float(sum(logp[len(head) - 1 + i, t] for i, t in enumerate(tgt)))


def params(lm):
    return {n: p.detach().clone() for n, p in lm.model.named_parameters()}


def assert_same(before, lm):
    after = dict(lm.model.named_parameters())
    assert before.keys() == after.keys()
    for name, value in before.items():
        assert torch.equal(value, after[name]), name


# -- closed forms ---------------------------------------------------------------------------------
def test_rome_rank_one_update_is_the_constrained_least_squares_solution():
    g = torch.Generator().manual_seed(0)
    d_out, d_in, n = 5, 7, 40
    W = torch.randn(d_out, d_in, generator=g, dtype=torch.float64)
    K = torch.randn(d_in, n, generator=g, dtype=torch.float64)  # old keys
    k = torch.randn(d_in, generator=g, dtype=torch.float64)
    v = torch.randn(d_out, generator=g, dtype=torch.float64)
    C = K @ K.T
    upd = ru.rome_update(v - W @ k, k, k, torch.inverse(C)).double()
    # Direct: min ||W' K - W K||^2 s.t. W' k = v, row by row through the KKT system.
    kkt = torch.zeros(d_in + 1, d_in + 1, dtype=torch.float64)
    kkt[:d_in, :d_in], kkt[:d_in, d_in], kkt[d_in, :d_in] = 2 * C, k, k
    direct = torch.stack([torch.linalg.solve(kkt, torch.cat([2 * C @ W[i], v[i:i + 1]]))[:d_in]
                          for i in range(d_out)])
    assert torch.allclose(W + upd, direct, atol=1e-4)
    assert torch.allclose((W + upd) @ k, v, atol=1e-4)
    assert torch.linalg.matrix_rank(upd) == 1
    # Identity covariance: the update moves only along k, leaving keys orthogonal to k alone.
    upd_i = ru.rome_update(v - W @ k, k, k).double()
    x = torch.randn(d_in, generator=g, dtype=torch.float64)
    x = x - (x @ k) / (k @ k) * k
    assert torch.allclose(upd_i @ x, torch.zeros(d_out, dtype=torch.float64), atol=1e-5)
    assert torch.allclose((W + upd_i) @ k, v, atol=1e-4)


def test_memit_update_is_the_regularized_least_squares_solution():
    g = torch.Generator().manual_seed(1)
    d_out, d_in, n, lam = 4, 6, 3, 2.5
    K = torch.randn(d_in, n, generator=g, dtype=torch.float64)
    R = torch.randn(d_out, n, generator=g, dtype=torch.float64)
    A = torch.randn(d_in, 50, generator=g, dtype=torch.float64)
    C = A @ A.T / 50
    upd = ru.memit_update(K, R, C, lam)
    # Direct: min_D ||D K - R||^2 + lam * tr(D C D^T) as one stacked least-squares problem.
    L = torch.linalg.cholesky(C)
    lhs = torch.cat([K.T, lam ** 0.5 * L.T])  # [n + d_in, d_in]
    rhs = torch.cat([R.T, torch.zeros(d_in, d_out, dtype=torch.float64)])
    direct = torch.linalg.lstsq(lhs, rhs).solution.T
    assert torch.allclose(upd, direct, atol=1e-8)
    # Without regularization pull (lam -> 0) the keys map exactly onto the residuals.
    assert torch.allclose(ru.memit_update(K, R, C, 1e-9) @ K, R, atol=1e-5)


# -- edits on tiny models ---------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["llama", "gemma3", "qwen2"])
def test_rome_raises_target_probability_and_restores_exactly(arch):
    lm = tiny(arch)
    request = REQUESTS[0]
    before_p = target_logprob(lm, request.prompt, request.target_new)
    before = params(lm)
    editor = ROME(layers=[1], **TINY)
    # a task may call under no_grad or inference_mode: the optimization must still run
    outer = torch.inference_mode() if arch == "qwen2" else torch.no_grad()
    with outer:
        with editor.edit(lm, [request]) as edited:
            assert edited is lm
            inside = target_logprob(lm, request.prompt, request.target_new)
            changed = [n for n, p in lm.model.named_parameters() if not torch.equal(p, before[n])]
    assert inside > before_p + 0.05, (before_p, inside)
    assert changed == [ru.down_proj_weight_name(lm.model, 1)]
    assert_same(before, lm)
    facts = editor.report()
    assert facts["edits"] == 1 and facts["edit_seconds"] > 0 and facts["edits_per_second"] > 0


def test_rome_update_maps_the_plain_key_to_the_optimized_value():
    """With the "{}" template and identity C, the edited layer outputs v_init + delta at the key."""
    lm = tiny("llama")
    request = REQUESTS[0]
    proj = ru.down_proj(lm.model, 2)
    plain = ru.template_prompts(lm.tokenizer, ["{}"], request.prompt, request.subject)
    _, out_before = ru.io_at(lm, proj, plain)
    editor = ROME(layers=[2], **TINY)
    with editor.edit(lm, [request]):
        _, out_after = ru.io_at(lm, proj, plain)
    moved = (out_after - out_before)[0]
    assert abs(float(moved.norm()) - editor.last_edit[0]["delta_norm"]) < 1e-3 * max(1.0, float(moved.norm()))


def test_rome_sequential_list_with_covariance_and_sampled_templates(tmp_path, monkeypatch):
    lm = tiny("llama")
    monkeypatch.setenv("LLMLAB_CACHE", str(tmp_path))  # after loading: the tokenizer stays cached
    before = params(lm)
    reqs = REQUESTS[:2]
    editor = ROME(layers=[1], v_lr=0.05, clamp_norm_factor=40.0, v_weight_decay=0.0, mom2_adjustment=True,
                  mom2_n_samples=40, mom2_max_length=64, context_template_length_params=[[5, 5]])
    p0 = target_logprob(lm, reqs[1].prompt, reqs[1].target_new)
    with editor.edit(lm, reqs):
        p1 = target_logprob(lm, reqs[1].prompt, reqs[1].target_new)
    assert p1 > p0  # the last edit written holds
    assert len(editor.last_edit) == 2 and editor.report()["mom2_seconds"] > 0
    assert_same(before, lm)
    assert list((tmp_path / "mom2").glob("tiny-llama-*-layer1-n40-len64.pt"))


def test_memit_batch_of_three_across_two_layers():
    lm = tiny("llama")
    before = params(lm)
    before_p = [target_logprob(lm, r.prompt, r.target_new) for r in REQUESTS]
    editor = MEMIT(layers=[1, 2], v_lr=0.5, clamp_norm_factor=1000.0, v_weight_decay=0.0,
                   mom2_n_samples=60, mom2_max_length=64, mom2_cache_on_disk=False,
                   context_template_length_params=[])
    with editor.edit(lm, REQUESTS):
        inside = [target_logprob(lm, r.prompt, r.target_new) for r in REQUESTS]
        changed = sorted(n for n, p in lm.model.named_parameters() if not torch.equal(p, before[n]))
    assert all(a > b for a, b in zip(inside, before_p)), (before_p, inside)
    assert changed == sorted(ru.down_proj_weight_name(lm.model, i) for i in (1, 2))
    assert [x["layer"] for x in editor.last_edit["layers"]] == [1, 2]
    assert len(editor.last_edit["requests"]) == 3
    assert_same(before, lm)
    assert editor.report()["edits"] == 3


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_memit_flags_models_that_normalize_the_mlp_output(arch, caplog):
    """Gemma 2/3 put a norm between the MLP and the residual add, which MEMIT's split assumes away."""
    lm = tiny(arch)
    editor = MEMIT(layers=[1, 2], v_num_grad_steps=2, mom2_adjustment=False, context_template_length_params=[])
    with caplog.at_level("WARNING"):
        for _ in range(2):
            with editor.edit(lm, REQUESTS[:1]):
                pass
    info = editor.report()
    assert len(info["last_z_error"]) == 2
    assert info.get("post_mlp_norm", False) == (arch == "gemma3")
    assert caplog.text.count("post_feedforward_layernorm") == (1 if arch == "gemma3" else 0)  # once, not per edit


def test_weights_restored_when_the_block_raises():
    lm = tiny("qwen2")
    before = params(lm)
    with pytest.raises(RuntimeError, match="boom"):
        with MEMIT(layers=[2, 3], mom2_adjustment=False, mom2_update_weight=1.0, **TINY).edit(lm, REQUESTS[:1]):
            raise RuntimeError("boom")
    assert_same(before, lm)


# -- pieces -----------------------------------------------------------------------------------------
def test_second_moment_matches_a_direct_computation():
    lm = tiny("llama")
    from llmlab.corpus import stdlib_docstrings

    got = ru.second_moments(lm, [0, 2], n_samples=5, max_length=32, on_disk=False)
    keys = {0: [], 2: []}
    hooks = [ru.down_proj(lm.model, i).register_forward_pre_hook(lambda m, a, i=i: keys[i].append(a[0][0]))
             for i in (0, 2)]
    with torch.no_grad():
        for text in stdlib_docstrings()[:5]:
            ids = lm.tokenizer(text, truncation=True, max_length=32)["input_ids"]
            lm.model(input_ids=torch.tensor([ids]))
    for h in hooks:
        h.remove()
    for i in (0, 2):
        k = torch.cat(keys[i]).double()
        assert torch.allclose(got[i].double(), k.T @ k / len(k), atol=1e-6)
    assert ru.second_moments(lm, [2], n_samples=5, max_length=32, on_disk=False)[2] is not None


def test_subject_last_token_and_target_tokens():
    lm = tiny("llama")
    tok = lm.tokenizer
    [p] = ru.template_prompts(tok, ["{}"], "The capital of France is", "France")
    assert tok.decode(p.ids[: p.lookup + 1]).endswith("France")
    assert not tok.decode(p.ids[: p.lookup]).endswith("France")
    [q] = ru.template_prompts(tok, ["Some words. {}"], "The capital of France is", "France")
    assert tok.decode(q.ids[: q.lookup + 1]).endswith("Some words. The capital of France")
    ids = ru.target_ids(tok, "The capital of France is", "Rome")
    assert tok.decode(ids) == " Rome"


def test_sampled_context_templates():
    lm = tiny("llama")
    groups = ru.context_templates(lm, [[5, 10]], seed=0)
    assert groups[0] == ["{}"] and len(groups[1]) == 10
    assert all(t.endswith(". {}") and t.count("{}") == 1 for t in groups[1])
    assert ru.context_templates(lm, [], seed=0) == [["{}"]]


def test_bad_layer_is_a_clear_user_error():
    lm = tiny("llama")  # 4 decoder layers
    with pytest.raises(UserError, match=r"layers=\[7\].*4 decoder layers.*0\.\.3"):
        with ROME(layers=[7], **TINY).edit(lm, REQUESTS[:1]):
            pass
    with pytest.raises(UserError, match="distinct indices"):
        with MEMIT(layers=[1, 1], **TINY).edit(lm, REQUESTS[:1]):
            pass


def test_depth_scaled_default_layers():
    assert rome_default_layers(32) == [5] and rome_default_layers(30) == [5] and rome_default_layers(18) == [3]
    assert memit_default_layers(32) == [4, 5, 6, 7, 8] and memit_default_layers(30) == [4, 5, 6, 7, 8]
    assert memit_default_layers(18) == [2, 3, 4, 5, 6] and memit_default_layers(4) == [0, 1, 2, 3]
    assert ROME(**TINY).resolved_layers(tiny("llama")) == [1]


# -- end to end through the CLI ---------------------------------------------------------------------
def test_llmlab_run_zsre_end_to_end(tmp_path):
    """`llmlab run method=memit task=zsre` on tiny-llama (one CLI run: its start-up dominates)."""
    import json

    from conftest import results_under, run_llmlab

    records = [{"subject": f"Thing {i}", "src": f"When was the inception of Thing {i}?",
                "rephrase": f"When was Thing {i} launched?", "alt": str(2000 + i),
                "loc": "nq question: what is the name of the last episode of spongebob", "loc_ans": "The String"}
               for i in range(2)]
    data = tmp_path / "zsre_mend_eval.json"
    data.write_text(json.dumps(records))
    run_llmlab(["run", "model=tiny-llama", "method=memit", "task=zsre", f"task.data_path={data}",
                "logger=none", "limit=2", "task.metrics=[token_acc]", "method.layers=[1,2]",
                "method.context_template_length_params=[]", "method.mom2_n_samples=20",
                "method.mom2_max_length=64", "method.mom2_cache_on_disk=false"],
               tmp_path / "out", env={"OMP_NUM_THREADS": "1"})
    [result] = results_under(tmp_path / "out")
    assert "reliability/token_acc" in json.dumps(result["metrics"])
    assert result["method_info"]["edits"] == 2 and result["method_info"]["edit_seconds"] > 0


def test_template_prefixes_count_the_prompt_in_their_length_as_easyedit():
    """util/generate.generate_fast(max_out_len=length) stops when prompt + new tokens reach `length`."""
    lm = tiny("llama")
    asked = []
    real = lm.model.generate

    def spy(ids, **kw):
        asked.append((ids.shape[1], kw["max_new_tokens"]))
        return real(ids, **kw)

    lm.model.generate = spy
    try:
        ru._TEMPLATE_CACHE.clear()
        ru.context_templates(lm, [[5, 5]], seed=1)
    finally:
        del lm.model.generate
    assert asked and all(prompt + new == 5 for prompt, new in asked)  # seed words of 5+ tokens generate nothing
