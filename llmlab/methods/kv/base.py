"""KV-cache presses: the shared plumbing of the KV-compression family.

A press compresses the KV cache once, at the end of prefill, per layer and per KV head; decoding
then appends to the compressed cache as usual (llmlab.generation.greedy_generate passes explicit
position ids and no attention mask, so layers may hold different lengths).

`KVPress.apply(lm)` registers a forward hook on every attention module
(`layers[i].self_attn`, `register_forward_hook(with_kwargs=True)`) and removes them in `finally`;
no model class is patched (NVIDIA kvpress style). On a prefill forward (query length > 1) the hook
reads the layer's freshly cached keys/values (post-RoPE, one tensor per KV head, never repeat_kv'd),
asks the press which prefix tokens each KV head keeps (`select`), and writes the compressed
tensors back into the cache layer. The press never changes the prefill's own attention output,
only what is cached for decoding (as in KVCache-Factory / DynamicKV's official code).

The model runs SDPA, which returns no attention weights, so the statistic a press needs is
recomputed here from the module's inputs: queries = q_proj(hidden_states) (+ q_norm for gemma3)
with the rotary embedding the layer received, keys from the cache; logits use the module's own
`scaling` (gemma3: query_pre_attn_scalar) and logit soft-capping when the model has it. GQA: the
attention of each KV head's group of query heads is averaged over the group (KVCache-Factory's
`gqa_score_agg='mean'`, `_reduce_group_scores`), before pooling.

Sliding-window layers (gemma3's local layers) are left as they are: their cache is already
bounded by the window, and cutting it would break the layer's own window bookkeeping. Their bytes
count in the statistics as held.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from llmlab.capabilities import KVCompression
from llmlab.errors import UserError
from llmlab.methods.base import Method
from llmlab.models import anatomy

POOLINGS = {"avg": "avg", "avgpool": "avg", "max": "max", "maxpool": "max"}


def attention_modules(model) -> list[torch.nn.Module]:
    """The self-attention module of every decoder layer, in depth order (with q/k/v projections)."""
    try:
        mods = anatomy.attention_modules(model)
    except UserError:
        mods = []
    if not mods or not all(hasattr(m, p) for m in mods for p in ("q_proj", "k_proj", "v_proj")):
        raise UserError(
            f"KV presses need decoder layers whose attention has q_proj/k_proj/v_proj (llama, mistral, qwen2, "
            f"gemma3 ...); {type(model).__name__} has none. Use method=none with this model."
        )
    return mods


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def pool_scores(scores: torch.Tensor, pooling: str, kernel_size: int) -> torch.Tensor:
    """SnapKV's 1-D pooling over positions (stride 1, padding kernel//2, as in KVCache-Factory)."""
    pad = kernel_size // 2
    if pooling == "avg":
        return F.avg_pool1d(scores, kernel_size=kernel_size, padding=pad, stride=1)
    if pooling == "max":
        return F.max_pool1d(scores, kernel_size=kernel_size, padding=pad, stride=1)
    raise UserError(f"pooling must be avg or max (avgpool/maxpool); got {pooling!r}.")


class Prefill:
    """One attention layer's prefill, as a press sees it: inputs, cached keys/values, statistics."""

    def __init__(self, press: "KVPress", module, layer_idx: int, num_layers: int, hidden: torch.Tensor,
                 kwargs: dict, cache, cache_layer):
        self.press, self.module, self.layer_idx, self.num_layers = press, module, layer_idx, num_layers
        self.hidden, self.kwargs, self.cache, self.cache_layer = hidden, kwargs, cache, cache_layer
        self.keys: torch.Tensor = cache_layer.keys      # (batch, kv_heads, n, head_dim), post-RoPE
        self.values: torch.Tensor = cache_layer.values
        self.batch, self.kv_heads, self.n, self.head_dim = self.keys.shape
        cfg = module.config
        self.num_heads = int(getattr(cfg, "num_attention_heads"))
        self.groups = self.num_heads // self.kv_heads
        self.scaling = float(getattr(module, "scaling", 1.0 / math.sqrt(self.head_dim)))
        self.softcap = getattr(module, "attn_logit_softcapping", None) or None

    def queries(self, start: int, end: int) -> torch.Tensor:
        """Post-RoPE queries of positions [start, end): (batch, kv_heads, groups, end-start, head_dim)."""
        m = self.module
        h = self.hidden[:, start:end]
        q = m.q_proj(h).view(self.batch, end - start, self.num_heads, self.head_dim).transpose(1, 2)
        if hasattr(m, "q_norm"):
            q = m.q_norm(q)
        cos, sin = self.kwargs["position_embeddings"]
        cos, sin = cos[:, start:end].unsqueeze(1), sin[:, start:end].unsqueeze(1)
        q = q * cos + _rotate_half(q) * sin
        return q.view(self.batch, self.kv_heads, self.groups, end - start, self.head_dim)

    def attention(self, start: int, end: int) -> torch.Tensor:
        """Softmax attention (float32) of queries [start, end) over keys [0, end), causal:
        (batch, kv_heads, groups, end-start, end)."""
        q = self.queries(start, end).float()
        k = self.keys[:, :, :end].float()
        c = end - start
        logits = torch.matmul(q.reshape(self.batch, self.kv_heads, self.groups * c, self.head_dim),
                              k.transpose(-1, -2)).view(self.batch, self.kv_heads, self.groups, c, end)
        logits.mul_(self.scaling)
        if self.softcap:
            logits.div_(self.softcap).tanh_().mul_(self.softcap)
        # causal: only the diagonal block (keys start..end) has future positions to hide
        future = torch.ones(c, c, dtype=torch.bool, device=logits.device).triu_(1)
        logits[..., start:end].masked_fill_(future, float("-inf"))
        return torch.softmax(logits, dim=-1)

    def window_scores(self, window_size: int) -> torch.Tensor:
        """SnapKV statistic: attention of the last `window_size` queries to each prefix token, summed
        over the window and averaged over each KV head's query group: (batch, kv_heads, n - window)."""
        attn = self.attention(self.n - window_size, self.n)
        return attn[..., : self.n - window_size].sum(dim=-2).mean(dim=2)

    def accumulated_scores(self, window_size: int, chunk_size: int) -> torch.Tensor:
        """H2O statistic: attention to each prefix token summed over every query of the prompt,
        averaged over the query group: (batch, kv_heads, n - window). Queries go in chunks, so
        memory is O(n * chunk) rather than O(n^2)."""
        acc = torch.zeros(self.batch, self.kv_heads, self.n, dtype=torch.float32, device=self.keys.device)
        for start in range(0, self.n, chunk_size):
            end = min(self.n, start + chunk_size)
            acc[..., :end] += self.attention(start, end).sum(dim=(2, 3))
        return acc[..., : self.n - window_size] / self.groups

    def keep(self, indices: torch.Tensor, window_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys/values holding the prefix tokens `indices` (batch, kv_heads, k; sorted by position
        here) and the last `window_size` tokens."""
        idx = indices.sort(dim=-1).values.unsqueeze(-1).expand(-1, -1, -1, self.head_dim)
        prefix = self.n - window_size
        k = torch.cat([self.keys[:, :, :prefix].gather(2, idx), self.keys[:, :, prefix:]], dim=2)
        v = torch.cat([self.values[:, :, :prefix].gather(2, idx), self.values[:, :, prefix:]], dim=2)
        return k, v


@dataclass
class KVPress(Method, KVCompression):
    """Base of every KV press: hooks, statistics, the compressed cache. A subclass writes `select`.

    The press reports its own facts: `example_facts()` the KV bytes held after the last prefill
    (per prompt, attached to the prediction), `report()` the means over every prompt of the run,
    `summary()` the one line the runner prints."""

    family: ClassVar[str] = "kv"
    name: ClassVar[str] = "kvpress"
    compresses: ClassVar[bool] = True  # False for fullkv (the reference row)

    kv_size: int | None = 128  # tokens kept per layer, observation window included
    window_size: int = 32      # observation window (always kept)

    def __post_init__(self):
        self.last_stats: dict[str, Any] = {}
        self._pooling: str | None = None
        self._held: list[int] = []   # KV bytes held after each prefill of the run
        self._full: list[int] = []   # ... and what the full cache would have held

    # -- the selection rule (subclasses) --------------------------------------------------------
    def select(self, p: Prefill) -> torch.Tensor | None:
        """Indices (batch, kv_heads, k) of prefix tokens (< n - window) to keep; None keeps all."""
        return None

    def after_layer(self, p: Prefill) -> None:
        """Called after the layer's compressed cache is written (DynamicKV re-allocates here)."""

    def begin_prefill(self, n: int, num_layers: int) -> None:
        """Called at layer 0 of every prefill (reset per-prompt state)."""

    # -- capabilities ---------------------------------------------------------------------------
    def kv_stats(self) -> dict[str, Any]:
        """KV bytes actually held after the last prefill, per layer and total, beside full-cache bytes."""
        return dict(self.last_stats)

    def example_facts(self) -> dict[str, Any]:
        if not self.last_stats:
            return {}
        return {"kv_bytes": self.last_stats["kv_bytes"], "kv_bytes_full": self.last_stats["kv_bytes_full"]}

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {"family": self.family, "press": self.name}
        if self._pooling:
            out["pooling_resolved"] = self._pooling
        if self._held:
            out.update(prompts=len(self._held), kv_bytes_mean=sum(self._held) / len(self._held),
                       kv_bytes_full_mean=sum(self._full) / len(self._full),
                       kv_fraction_held=sum(self._held) / max(sum(self._full), 1))
        return out

    def summary(self) -> str | None:
        if not self._held:
            return None
        held, full = sum(self._held) / len(self._held), sum(self._full) / len(self._full)
        return (f"{self.name}: KV held {held / 2**20:.2f} MiB vs full {full / 2**20:.2f} MiB per prompt "
                f"({sum(self._held) / max(sum(self._full), 1):.1%}) over {len(self._held)} prompts")

    def resolve_pooling(self, lm, pooling: str | None) -> str:
        """A `pooling: null` field means the model spec's `kv_pooling` (avg for llama-family)."""
        value = pooling if pooling is not None else (lm.spec or {}).get("kv_pooling", "avg")
        if str(value) not in POOLINGS:
            raise UserError(f"{self.name}: pooling must be avg or max (or null: the model's kv_pooling); got {value!r}. "
                            f"Set method.pooling=avg or model.kv_pooling=max.")
        return POOLINGS[str(value)]

    # -- plumbing -------------------------------------------------------------------------------
    def _check(self, lm=None) -> None:
        if self.compresses and (self.kv_size is None or self.kv_size <= self.window_size):
            raise UserError(f"{self.name}: kv_size ({self.kv_size}) must exceed window_size ({self.window_size}), "
                            f"since the observation window is part of the kept tokens. Raise method.kv_size.")

    @contextmanager
    def apply(self, lm):
        self._check(lm)
        self.last_stats = {}
        if hasattr(self, "pooling"):
            self._pooling = self.resolve_pooling(lm, getattr(self, "pooling"))
        modules = attention_modules(lm.model)
        handles = [m.register_forward_hook(partial(self._hook, layer_idx=i, num_layers=len(modules)), with_kwargs=True)
                   for i, m in enumerate(modules)]
        try:
            yield lm
        finally:
            for h in handles:
                h.remove()

    @torch.no_grad()
    def _hook(self, module, args, kwargs, output, *, layer_idx: int, num_layers: int):
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        cache = kwargs.get("cache", kwargs.get("past_key_values", kwargs.get("past_key_value")))
        if hidden is None or cache is None or hidden.shape[1] <= 1:
            if cache is not None and layer_idx == 0 and hidden is not None:
                self._check_decodable(module, cache)  # before the deeper layers decode this step
            return None  # decoding (or no cache): nothing to do
        n = hidden.shape[1]
        if layer_idx == 0:
            self._full_tokens = [0] * num_layers
            self.begin_prefill(n, num_layers)
        cache_layer = cache.layers[getattr(module, "layer_idx", layer_idx)]
        keys = cache_layer.keys
        self._full_tokens[layer_idx] = keys.shape[-2]
        fresh = keys.shape[-2] == n and not getattr(cache_layer, "is_sliding", False)
        if fresh and self.compresses:
            p = Prefill(self, module, layer_idx, num_layers, hidden, kwargs, cache, cache_layer)
            indices = self.select(p)
            if indices is not None:
                cache_layer.keys, cache_layer.values = p.keep(indices, self.window_size)
            self.after_layer(p)
        if layer_idx == num_layers - 1:
            self._record(cache, module, n)
        return None

    def _check_decodable(self, module, cache) -> None:
        """Eager attention sizes the decoding mask from layer 0's cache: layers of different lengths
        (per-layer budgets, or uncompressed sliding-window layers) cannot be decoded with it."""
        if getattr(module.config, "_attn_implementation", None) != "eager":
            return
        held = [int(layer.keys.shape[-2]) for layer in cache.layers if getattr(layer, "keys", None) is not None]
        lengths = {held[0] - 1, *held[1:]}  # layer 0 has already appended this step's token
        if len(lengths) > 1:
            raise UserError(
                f"{self.name} left layers with different cache lengths ({min(lengths)}..{max(lengths)} tokens), which "
                f"transformers' eager attention cannot decode (it sizes the mask from layer 0). Use "
                f"model.attn_implementation=sdpa (the default).")

    def _record(self, cache, module, n: int) -> None:
        layers = cache.layers[: len(self._full_tokens)]
        per_layer, tokens, per_token = [], [], []
        for layer in layers:
            k, v = layer.keys, layer.values
            per_layer.append(k.numel() * k.element_size() + v.numel() * v.element_size())
            tokens.append(int(k.shape[-2]))
            b, h, _, d = k.shape
            per_token.append(b * h * d * (k.element_size() + v.element_size()))
        full = sum(t * f for t, f in zip(per_token, self._full_tokens))
        if not self.compresses or self.kv_size is None:
            budget = full
        else:  # kv_size tokens per compressible layer (fewer if the prompt is shorter); sliding layers as held
            budget = sum(t * (held if getattr(layer, "is_sliding", False) else min(self.kv_size, f))
                         for t, f, held, layer in zip(per_token, self._full_tokens, tokens, layers))
        self.last_stats = {
            "kv_bytes": int(sum(per_layer)),
            "kv_bytes_full": int(full),
            "kv_bytes_budget": int(budget),
            "kv_bytes_per_layer": per_layer,
            "kv_tokens_per_layer": tokens,
            "kv_tokens_full_per_layer": list(self._full_tokens),
            "prompt_tokens": int(n),
        }
        self._held.append(self.last_stats["kv_bytes"])
        self._full.append(self.last_stats["kv_bytes_full"])
