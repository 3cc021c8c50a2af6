"""SnapKV (Li et al., 2024, "SnapKV: LLM Knows What You are Looking for Before Generation").

Official code (as run for the DynamicKV baselines): KVCache-Factory `pyramidkv/pyramidkv_utils.py`,
`SnapKVCluster.update_kv` / `_update_kv_kv_head`: attention of the last `window_size` queries to the
prefix (causal inside the window, softmax in float32), summed over the window, averaged over each
KV head's query group, pooled over positions (kernel 7), top `kv_size - window_size` per KV head,
plus the window itself; no compression when the prompt is shorter than kv_size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from llmlab.methods.kv.base import KVPress, Prefill, pool_scores


@dataclass
class SnapKV(KVPress):
    name: ClassVar[str] = "snapkv"

    kv_size: int | None = 128
    window_size: int = 32       # DynamicKV run/longbench/pred.py: window 32 for snapkv/streamingllm/h2o
    kernel_size: int = 7        # DynamicKV pred.py --kernel_sizes 7
    pooling: str | None = None  # avg | max; null: the model spec's kv_pooling (DynamicKV scripts: avg llama, max mistral/qwen2)

    def capacity(self, p: Prefill) -> int:
        """Prefix tokens this layer keeps (window excluded)."""
        return self.kv_size - self.window_size

    def select(self, p: Prefill) -> torch.Tensor | None:
        if p.n < self.kv_size:
            return None
        scores = pool_scores(p.window_scores(self.window_size), self._pooling, self.kernel_size)
        k = min(self.capacity(p), p.n - self.window_size)
        return scores.topk(k, dim=-1).indices
