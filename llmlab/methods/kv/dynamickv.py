"""DynamicKV (Zhou et al., 2024, "DynamicKV: Task-Aware Adaptive KV Cache Compression for Long
Context LLMs"): task-aware per-layer budgets, re-allocated during prefill.

Official code: github.com/DreamMr/DynamicKV, `kv_compression/token_drop/methods/dynamic_v11.py`,
class `DynamicKVClusterV11` (`budget_compute_per_layer`, `update_and_reset_budget`), called from
`llama_model_impl/dynamickv_v11.py` (`llama_flash_attn2_forward_DynamicKV_V11`). Per layer:
  1. SnapKV window statistic (window 8, pooling kernel 7, avg/max pooling per model), and a
     provisional keep of the top budget_size = min(radio_max * base, n - window) tokens per head,
     base = kv_size - window;
  2. every 4 layers (layer % 4 == 3), one global top-k of base * heads * layers_seen over the pooled
     scores of all layers seen so far; count the winners per layer, `// layers_seen`, normalise,
     scale to budget_size, rescale so the budgets sum to base * num_layers (the *whole* model's
     budget: the official code does not pro-rate to the layers seen, so intermediate budgets are
     only capped by what each layer still holds), the remainder to the newest layer;
  3. each seen layer is cut to its budget by dropping its lowest-scoring kept tokens (the official
     cache is in score order and is sliced `[:budget]`); a layer never grows back.
Deviations (all documented in the report):
  - GQA: selection per KV head with scores averaged over the query group (the official code
    selects on repeat_kv'd heads, i.e. per query head); global top-k counts KV-head entries.
  - a last re-allocation also runs at the final layer when num_layers % 4 != 0 (official: the
    trailing layers keep their provisional 10x budget; all official models have 32 layers, where
    this changes nothing), so the total matches the budget for e.g. SmolLM2's 30 layers.
  - a layer whose new budget exceeds what it holds keeps what it holds (the official slice
    `k_cache[:, :, :fix_length]` would then re-include window tokens and duplicate them).
  - prompts shorter than kv_size are not compressed (official: effectively everything is kept).
The budget shares are computed as the official code computes them (a 0-d int64 count divided by
the total is a float32 tensor; `budget_size * share` in float32, truncated): in float64 about 3 %
of random allocations truncate one token differently, which then spreads to every layer.
  - sliding-window layers (gemma3's local layers) are not compressed and not counted in the
    global budget; "every 4 layers" counts compressed layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from llmlab.methods.kv.base import KVPress, Prefill, pool_scores


def allocate_budgets(pooled: torch.Tensor, base: int, budget_size: int, num_layers: int,
                     final: bool) -> list[int]:
    """Per-layer budgets (window excluded) for the layers seen so far, as `update_and_reset_budget`.

    `pooled`: (layers_seen, batch, kv_heads, n - window) pooled window scores. The result sums to
    `base * num_layers` exactly. `final`: this is the last layer's re-allocation (the official
    code then tops up the last layer's count to `tk // num_layers`).
    """
    seen, batch, heads, length = pooled.shape
    flat = pooled.reshape(-1)
    tk = base * heads * batch * seen
    top = flat.topk(min(tk, flat.numel())).indices
    counts = torch.bincount(top // (batch * heads * length), minlength=seen) // seen
    if final and int(counts.sum()) != batch * heads * length:
        counts[-1] += tk // num_layers - counts.sum()
    total = int(counts.sum())
    need = base * num_layers
    if total > 0:  # as the official code: 0-d int64 tensor / int -> float32, times budget_size in float32
        fix = [int((budget_size * (c / total)).item()) for c in counts]
    else:
        fix = [int(budget_size / seen)] * seen
    ratio = sum(fix) / need
    fix = [int(f // ratio) for f in fix] if ratio > 0 else [need // seen] * seen
    fix[-1] += need - sum(fix)
    return fix


@dataclass
class DynamicKV(KVPress):
    name: ClassVar[str] = "dynamickv"

    kv_size: int | None = 128
    window_size: int = 8        # run_llama3_8b_dynamic_v11.2_max_radio_10.sh: WINDOW_SIZE=8
    kernel_size: int = 7        # same script: KERNEL_SIZES=7
    pooling: str | None = None  # avg | max; null: the model's kv_pooling (scripts: avgpool llama/internlm, maxpool mistral/qwen2)
    radio_max: float = 10       # same script: RADIO_MAX=10 (provisional keep = radio_max * base)
    update_interval: int = 4    # dynamickv_v11.py: re-allocate when layer_idx % 4 == 3

    def begin_prefill(self, n: int, num_layers: int) -> None:
        self._pooled: list[torch.Tensor] = []     # pooled window scores per layer seen
        self._kept_scores: list[torch.Tensor] = []  # score of each kept prefix entry, aligned with the cache
        self._layers: list = []                   # the cache layers seen
        self.last_budgets: list[int] = []

    def budget_size(self, n: int) -> int:
        base = self.kv_size - self.window_size
        return min(int(self.radio_max * base), n - self.window_size)

    def select(self, p: Prefill) -> torch.Tensor | None:
        if p.n < self.kv_size:
            return None
        scores = pool_scores(p.window_scores(self.window_size), self._pooling, self.kernel_size)
        top = scores.topk(self.budget_size(p.n), dim=-1)
        order = top.indices.sort(dim=-1)  # the cache holds kept tokens in position order
        self._pooled.append(scores)
        self._kept_scores.append(top.values.gather(-1, order.indices))
        return order.values

    def after_layer(self, p: Prefill) -> None:
        if p.n < self.kv_size:
            return
        self._layers.append(p.cache_layer)
        # layers this press compresses (all of them, except sliding-window layers, e.g. gemma3's local ones)
        num_layers = sum(not getattr(layer, "is_sliding", False) for layer in p.cache.layers[: p.num_layers])
        seen = len(self._layers)
        last = seen == num_layers
        if seen % self.update_interval != 0 and not last:  # official: layer_idx % 4 == 3
            return
        budgets = allocate_budgets(torch.stack(self._pooled), self.kv_size - self.window_size,
                                   self.budget_size(p.n), num_layers, final=last)
        self.last_budgets = budgets
        for j, (layer, budget) in enumerate(zip(self._layers, budgets)):
            held = self._kept_scores[j].shape[-1]
            if budget >= held:
                continue  # never grows back
            keep = self._kept_scores[j].topk(max(budget, 0), dim=-1).indices.sort(dim=-1).values
            self._kept_scores[j] = self._kept_scores[j].gather(-1, keep)
            idx = keep.unsqueeze(-1).expand(-1, -1, -1, layer.keys.shape[-1])
            w = self.window_size
            layer.keys = torch.cat([layer.keys[:, :, :held].gather(2, idx), layer.keys[:, :, held:held + w]], dim=2)
            layer.values = torch.cat([layer.values[:, :, :held].gather(2, idx), layer.values[:, :, held:held + w]], dim=2)
