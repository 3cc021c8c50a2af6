"""KV presses: kept tokens against references computed here from the model's own (eager) attention
weights, DynamicKV's budgets, cache bytes, exactness of decoding with a compressed cache, and a
run on every tiny architecture."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from transformers import DynamicCache

from llmlab.errors import UserError
from llmlab.generation import greedy_generate
from llmlab.methods.kv.base import KVPress, attention_modules
from llmlab.methods.kv.dynamickv import DynamicKV, allocate_budgets
from llmlab.methods.kv.fullkv import FullKV
from llmlab.methods.kv.h2o import H2O
from llmlab.methods.kv.pyramidkv import PyramidKV
from llmlab.methods.kv.snapkv import SnapKV
from llmlab.methods.kv.streamingllm import StreamingLLM
from llmlab.models.lm import LM
from llmlab.models.tiny import ARCHS, tiny_causal_lm

PRESSES = [FullKV, StreamingLLM, H2O, SnapKV, PyramidKV, DynamicKV]


@functools.lru_cache(maxsize=None)
def _tiny(arch, num_layers):
    return tiny_causal_lm(arch, seed=0, num_layers=num_layers)


def make_lm(arch="llama", num_layers=4, pooling="avg", eager=True):
    """A tiny model (built once per arch/depth), with eager attention when the test reads weights."""
    model, tok = _tiny(arch, num_layers)
    model.set_attn_implementation("eager" if eager else "sdpa")
    return LM(model=model, tokenizer=tok, name=f"tiny-{arch}", spec={"kv_pooling": pooling})


def ids_for(n, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(10, 1000, (batch, n), generator=g)


@torch.no_grad()
def prefill(lm, ids, press=None):
    """Cache after one prefill (under `press` if given) and the eager attention weights per layer."""
    cache = DynamicCache(config=lm.model.config)
    if press is None:
        out = lm.model(input_ids=ids, cache=cache, use_cache=True, output_attentions=True)
    else:
        with press.apply(lm):
            out = lm.model(input_ids=ids, cache=cache, use_cache=True, output_attentions=True)
    return cache, out.attentions


def kept_positions(full_keys, keys, window):
    """Prompt positions of the prefix entries held in a compressed layer (matched by key rows)."""
    prefix = keys[:, :, : keys.shape[2] - window]
    match = (prefix[:, :, :, None, :] == full_keys[:, :, None, :, :]).all(-1)  # (b, h, kept, n)
    assert (match.sum(-1) == 1).all(), "every kept entry is exactly one prompt token"
    return match.float().argmax(-1).sort(-1).values


def group_mean(scores, kv_heads):
    b, h, n = scores.shape
    return scores.view(b, kv_heads, h // kv_heads, n).mean(2)


def ref_window(attn, window, kv_heads):
    n = attn.shape[-1]
    return group_mean(attn[:, :, -window:, : n - window].sum(2), kv_heads)


def ref_h2o(attn, window, kv_heads):
    n = attn.shape[-1]
    return group_mean(attn[:, :, :, : n - window].sum(2), kv_heads)


def ref_pool(scores, pooling, kernel=7):
    fn = F.avg_pool1d if pooling == "avg" else F.max_pool1d
    return fn(scores, kernel_size=kernel, padding=kernel // 2, stride=1)


def assert_topk(kept, scores, k, tol=1e-5):
    """`kept` (b, h, k) is a top-k of `scores` (b, h, m) per row (ties within `tol` either way)."""
    assert kept.shape[-1] == k
    for b in range(scores.shape[0]):
        for h in range(scores.shape[1]):
            s = scores[b, h]
            inside = torch.zeros_like(s, dtype=torch.bool)
            inside[kept[b, h]] = True
            if (~inside).any():
                assert s[inside].min() >= s[~inside].max() - tol, (b, h)


def check_window_and_length(full, comp, n, window, tokens):
    for layer_full, layer in zip(full.layers, comp.layers):
        assert layer.keys.shape[2] == tokens
        assert torch.equal(layer.keys[:, :, -window:], layer_full.keys[:, :, n - window:])
        assert torch.equal(layer.values[:, :, -window:], layer_full.values[:, :, n - window:])


# --- the statistic the presses compute equals the model's own attention weights ----------------------


class _Capture(KVPress):
    name = "capture"

    def __post_init__(self):
        super().__post_init__()
        self.seen = {}

    def select(self, p):
        self.seen[p.layer_idx] = (p.window_scores(8), p.accumulated_scores(8, chunk_size=7))
        return None


@pytest.mark.parametrize("arch", ARCHS)
def test_statistics_match_eager_attention(arch):
    lm = make_lm(arch)
    ids = ids_for(50)
    press = _Capture(kv_size=16, window_size=8)
    _, attns = prefill(lm, ids, press)
    kv_heads = lm.model.config.num_key_value_heads
    assert len(press.seen) == lm.model.config.num_hidden_layers
    for layer, (window, h2o) in press.seen.items():
        torch.testing.assert_close(window, ref_window(attns[layer], 8, kv_heads), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(h2o, ref_h2o(attns[layer], 8, kv_heads), atol=1e-5, rtol=1e-4)


# --- each press keeps what its rule says ---------------------------------------------------------------


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_snapkv_keeps_topk_of_pooled_window_attention(pooling):
    lm = make_lm(pooling=pooling)
    n, kv, w = 96, 40, 8
    ids = ids_for(n)
    full, attns = prefill(lm, ids)
    comp, _ = prefill(lm, ids, SnapKV(kv_size=kv, window_size=w))
    check_window_and_length(full, comp, n, w, kv)
    for layer in range(len(attns)):
        kept = kept_positions(full.layers[layer].keys, comp.layers[layer].keys, w)
        scores = ref_pool(ref_window(attns[layer], w, 2), pooling)
        assert_topk(kept, scores, kv - w)
        assert not torch.equal(kept[:, 0], kept[:, 1]), "KV heads choose their own tokens"


def test_h2o_keeps_heavy_hitters_of_whole_prompt():
    lm = make_lm()
    n, kv, w = 96, 40, 8
    ids = ids_for(n)
    full, attns = prefill(lm, ids)
    comp, _ = prefill(lm, ids, H2O(kv_size=kv, window_size=w, chunk_size=17))
    check_window_and_length(full, comp, n, w, kv)
    for layer in range(len(attns)):
        kept = kept_positions(full.layers[layer].keys, comp.layers[layer].keys, w)
        assert_topk(kept, ref_h2o(attns[layer], w, 2), kv - w)


@pytest.mark.parametrize("n_sink", [None, 4])
def test_streamingllm_keeps_sinks_and_recent(n_sink):
    lm = make_lm()
    n, kv, w = 90, 40, 8
    ids = ids_for(n)
    full, _ = prefill(lm, ids)
    comp, _ = prefill(lm, ids, StreamingLLM(kv_size=kv, window_size=w, n_sink=n_sink))
    check_window_and_length(full, comp, n, w, kv)
    expected = list(range(kv - w)) if n_sink is None else list(range(4)) + list(range(n - w - (kv - w - 4), n - w))
    for layer in range(len(full.layers)):
        kept = kept_positions(full.layers[layer].keys, comp.layers[layer].keys, w)
        assert (kept == torch.tensor(expected)).all()


@pytest.mark.parametrize("n,expected", [
    (96, [63, 43, 23, 3]),   # base 32: max = 2*32 - 32//20 = 63, min 1, step (63-1)//3 = 20
    (70, [62, 42, 22, 2]),   # max capped at n - window = 62, min = 64 - 62 = 2
    (60, [32, 32, 32, 32]),  # n < 2 * base: uniform, as SnapKV
])
def test_pyramidkv_capacity_falls_over_depth(n, expected):
    lm = make_lm()
    kv, w = 40, 8
    ids = ids_for(n)
    full, attns = prefill(lm, ids)
    comp, _ = prefill(lm, ids, PyramidKV(kv_size=kv, window_size=w))
    for layer, cap in enumerate(expected):
        assert comp.layers[layer].keys.shape[2] == cap + w
        kept = kept_positions(full.layers[layer].keys, comp.layers[layer].keys, w)
        assert_topk(kept, ref_pool(ref_window(attns[layer], w, 2), "avg"), cap)


def test_dynamickv_allocation_by_hand():
    # layer 0 outranks every other entry: the global top-8 all fall in layer 0
    pooled = torch.zeros(4, 1, 1, 10)
    pooled[0] = 1.0
    assert allocate_budgets(pooled, base=2, budget_size=10, num_layers=4, final=True) == [8, 0, 0, 0]
    # layers interleaved in rank (score = 4 * position + layer): the global top-24 (base 3 x 2 heads x
    # 4 layers) has 6 entries per layer; counts // 4 layers = [1, 1, 1, 1]; at the last layer the
    # official code tops the last count up to tk // num_layers = 6 -> [1, 1, 1, 3]; shares of
    # budget_size 30 -> [5, 5, 5, 15], rescaled by 30 / 12 -> [2, 2, 2, 6]
    position = torch.arange(10).view(1, 1, 1, 10)
    layer = torch.arange(4).view(4, 1, 1, 1)
    pooled = (4 * position + layer).float().expand(4, 1, 2, 10).contiguous()
    assert allocate_budgets(pooled, base=3, budget_size=30, num_layers=4, final=True) == [2, 2, 2, 6]
    # 4 of 8 layers seen: the seen layers share the whole model's budget 3 * 8 = 24 (not pro-rated);
    # [7, 7, 7, 7] rescaled by 28 / 24 floors to 5 each (float floor division, as official), rest to the last
    assert allocate_budgets(pooled, base=3, budget_size=30, num_layers=8, final=False) == [5, 5, 5, 9]


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_dynamickv_budgets_and_selection(pooling):
    num_layers, n, kv, w = 6, 120, 24, 8  # re-allocations at layer 3 and (last) layer 5
    lm = make_lm(num_layers=num_layers, pooling=pooling)
    ids = ids_for(n, batch=1)
    press = DynamicKV(kv_size=kv, window_size=w, radio_max=3)
    full, attns = prefill(lm, ids)
    comp, _ = prefill(lm, ids, press)
    base, budget_size = kv - w, min(3 * (kv - w), n - w)
    assert sum(press.last_budgets) == base * num_layers
    tokens = press.kv_stats()["kv_tokens_per_layer"]
    assert all(w <= t <= budget_size + w for t in tokens)           # the per-layer maximum
    assert sum(t - w for t in tokens) <= base * num_layers            # never over the global budget
    assert sum(t - w for t in tokens) >= 0.8 * base * num_layers
    assert len(set(tokens)) > 1, "layers get different budgets"
    for layer in range(num_layers):
        assert tokens[layer] - w == min(press.last_budgets[layer], budget_size) or layer < 4
        kept = kept_positions(full.layers[layer].keys, comp.layers[layer].keys, w)
        assert_topk(kept, ref_pool(ref_window(attns[layer], w, 2), pooling), tokens[layer] - w)
        assert torch.equal(comp.layers[layer].keys[:, :, -w:], full.layers[layer].keys[:, :, -w:])


def test_pooling_comes_from_model_spec():
    lm = make_lm(pooling="max", eager=False)
    press = DynamicKV(kv_size=24)
    with press.apply(lm):
        assert press._pooling == "max"
    press = SnapKV(kv_size=48, pooling="avgpool")
    with press.apply(lm):
        assert press._pooling == "avg"
    with pytest.raises(UserError, match="pooling"):
        with SnapKV(kv_size=48, pooling="mean").apply(lm):
            pass
    with pytest.raises(UserError, match="kv_size"):
        with SnapKV(kv_size=16, window_size=32).apply(lm):
            pass


# --- bytes held ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", PRESSES)
def test_cache_bytes_equal_kept_tokens(cls):
    lm = make_lm(eager=False)
    n, batch = 100, 2
    press = cls() if cls is FullKV else cls(kv_size=40, window_size=8)
    comp, _ = prefill(lm, ids_for(n, batch), press)
    stats = press.kv_stats()
    cfg = lm.model.config
    per_token = batch * cfg.num_key_value_heads * (cfg.hidden_size // cfg.num_attention_heads) * 2 * 4  # K+V fp32
    tokens = [layer.keys.shape[2] for layer in comp.layers]
    assert stats["kv_tokens_per_layer"] == tokens
    assert stats["kv_bytes_per_layer"] == [t * per_token for t in tokens]
    assert stats["kv_bytes"] == sum(tokens) * per_token
    assert stats["kv_bytes_full"] == n * cfg.num_hidden_layers * per_token
    for layer in comp.layers:  # per KV head, never repeat_kv'd
        assert layer.keys.shape[1] == cfg.num_key_value_heads
    if cls is FullKV:
        assert stats["kv_bytes"] == stats["kv_bytes_full"]
    else:
        assert stats["kv_bytes"] <= 1.05 * stats["kv_bytes_budget"]
        assert stats["kv_bytes_budget"] == 40 * cfg.num_hidden_layers * per_token


# --- decoding with the compressed cache --------------------------------------------------------------


@pytest.mark.parametrize("cls", PRESSES[1:])
def test_generation_equals_full_cache_when_budget_covers_prompt(cls):
    lm = make_lm(eager=False)
    ids = ids_for(48)
    ref = greedy_generate(lm, ids, 6)
    for kv_size in (48, 64):  # == prompt length (compression path keeps all) and > prompt length
        press = cls(kv_size=kv_size, window_size=8)
        with press.apply(lm):
            out = greedy_generate(lm, ids, 6)
        assert out == ref, (cls.name, kv_size)
        assert press.kv_stats()["kv_bytes"] == press.kv_stats()["kv_bytes_full"]


@pytest.mark.parametrize("cls", [SnapKV, H2O, StreamingLLM])
@pytest.mark.parametrize("arch", ["llama", "gemma3"])
@torch.no_grad()
def test_decode_with_per_head_cache_is_exact(cls, arch):
    """One decode step on the compressed cache equals a full forward whose last query may only see
    the kept tokens (a per-head 4-D mask): positions continue from the prompt length, heads differ."""
    lm = make_lm(arch, num_layers=1, eager=False)
    model, n = lm.model, 60
    ids = ids_for(n + 1, batch=1)
    full = DynamicCache(config=model.config)
    model(input_ids=ids[:, :n], cache=full, use_cache=True)
    cache = DynamicCache(config=model.config)
    with cls(kv_size=24, window_size=8).apply(lm):
        model(input_ids=ids[:, :n], cache=cache, use_cache=True)
        out = model(input_ids=ids[:, n:], cache=cache, position_ids=torch.tensor([[n]]), use_cache=True).logits[0, -1]
    kept = kept_positions(full.layers[0].keys, cache.layers[0].keys[:, :, :-1], 8)[0]
    heads = model.config.num_attention_heads
    groups = heads // model.config.num_key_value_heads
    mask = torch.full((1, heads, n + 1, n + 1), float("-inf")).triu(1)
    for h in range(heads):
        row = torch.full((n + 1,), float("-inf"))
        row[kept[h // groups]] = 0
        row[n - 8:] = 0
        mask[0, h, n] = row
    ref = model(input_ids=ids, attention_mask=mask).logits[0, -1]
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)


def test_decoding_appends_and_hooks_are_removed():
    lm = make_lm(eager=False)
    press = DynamicKV(kv_size=24, window_size=8)
    modules = attention_modules(lm.model)
    cache_lengths = []

    def spy(module, args, kwargs, output):
        cache = kwargs["cache"]
        cache_lengths.append(cache.layers[module.layer_idx].keys.shape[2])

    before = [len(m._forward_hooks) for m in modules]
    handle = modules[-1].register_forward_hook(spy, with_kwargs=True)
    try:
        with press.apply(lm):
            assert [len(m._forward_hooks) for m in modules] == [b + 1 for b in before[:-1]] + [before[-1] + 2]
            out = greedy_generate(lm, ids_for(80), 5)[0]
    finally:
        handle.remove()
    assert [len(m._forward_hooks) for m in modules] == before
    kept = press.kv_stats()["kv_tokens_per_layer"][-1]
    assert cache_lengths[0] == 80  # the spy ran before the press's hook on the prefill
    assert len(cache_lengths) >= 2 and out
    assert cache_lengths[1:] == [kept + i for i in range(1, len(cache_lengths))]


# --- every architecture -------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_every_press_runs_on_each_arch(arch):
    lm = make_lm(arch, eager=False)
    ids = ids_for(70)
    for cls in PRESSES:
        press = cls() if cls is FullKV else cls(kv_size=32, window_size=8)
        with press.apply(lm):
            out = greedy_generate(lm, ids, 4)
        assert len(out) == 2 and all(len(o) <= 4 for o in out)
        stats = press.kv_stats()
        assert stats["prompt_tokens"] == 70
        assert len(stats["kv_tokens_per_layer"]) == lm.model.config.num_hidden_layers
        if cls is not FullKV:
            assert stats["kv_bytes"] < 0.6 * stats["kv_bytes_full"]
        assert press.family == "kv" and press.name == cls.name


def _official_budgets(pooled, base, budget_size, num_layers, final, dtype):
    """DynamicKV dynamic_v11.py update_and_reset_budget, transcribed; `dtype` of the shares."""
    seen, b, h, length = pooled.shape
    tk = base * h * seen * b
    top = pooled.reshape(-1).topk(min(tk, pooled.numel())).indices
    counts = torch.bincount(top // (b * h * length), minlength=seen) // seen
    if final and int(counts.sum()) != b * h * length:
        counts[-1] += tk // num_layers - counts.sum()
    shares = [t.to(dtype) / torch.sum(counts).item() for t in counts]
    fix = [int((budget_size * t).item()) for t in shares]
    need = base * num_layers
    ratio = sum(fix) / need
    fix = [int(k // ratio) for k in fix]
    fix[-1] += need - sum(fix)
    return fix


def test_dynamickv_budget_shares_truncate_in_float32_as_the_official_code():
    import random

    differs = 0
    for i in range(300):
        rng = random.Random(i)
        torch.manual_seed(i)
        seen, length, base = rng.choice([4, 8, 12]), rng.randint(40, 300), rng.randint(8, 60)
        pooled = torch.rand(seen, 1, 2, length)
        budget_size = min(10 * base, length)
        ours = allocate_budgets(pooled, base, budget_size, 12, final=seen == 12)
        assert ours == _official_budgets(pooled, base, budget_size, 12, seen == 12, torch.float32), i
        differs += ours != _official_budgets(pooled, base, budget_size, 12, seen == 12, torch.float64)
    assert differs > 0  # float64 shares would have truncated differently somewhere


def test_decoding_layers_of_different_lengths_under_eager_attention_is_refused():
    from llmlab.methods.kv.pyramidkv import PyramidKV
    from llmlab.methods.kv.snapkv import SnapKV

    lm = make_lm()  # eager attention
    ids = ids_for(96)
    with pytest.raises(UserError, match="eager attention cannot decode"):
        with PyramidKV(kv_size=40, window_size=8).apply(lm):
            greedy_generate(lm, ids, 3)
    with SnapKV(kv_size=40, window_size=8).apply(lm):  # every layer keeps 40: decodes under eager
        assert len(greedy_generate(lm, ids, 3)[0]) <= 3
