"""H2O (Zhang et al., 2023, "Heavy-Hitter Oracle"), as a one-shot prefill press.

Official code (as run for the DynamicKV baselines): KVCache-Factory `pyramidkv/pyramidkv_utils.py`,
`H2OKVCluster.update_kv` / `_update_kv_kv_head`: attention of *every* prompt query (causal,
softmax in float32), summed over queries for each prefix token (no pooling), group-averaged for
GQA; the top `kv_size - window_size` per KV head plus the last `window_size` tokens are kept; no
compression when the prompt is shorter than kv_size. The column sums are accumulated over chunks of
`chunk_size` queries, so memory is O(n * chunk) instead of the official O(n^2) matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from llmlab.methods.kv.base import KVPress, Prefill


@dataclass
class H2O(KVPress):
    name: ClassVar[str] = "h2o"

    kv_size: int | None = 128
    window_size: int = 32   # DynamicKV run/longbench/pred.py: window 32 for snapkv/streamingllm/h2o
    chunk_size: int = 256   # queries per chunk when accumulating (memory knob; does not change the result)

    def select(self, p: Prefill) -> torch.Tensor | None:
        if p.n < self.kv_size:
            return None
        scores = p.accumulated_scores(self.window_size, self.chunk_size)
        return scores.topk(self.kv_size - self.window_size, dim=-1).indices
