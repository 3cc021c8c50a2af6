"""StreamingLLM (Xiao et al., 2024, "Efficient Streaming Language Models with Attention Sinks"),
as a one-shot prefill press the way KVCache-Factory runs it for the DynamicKV baselines.

Official code: KVCache-Factory `pyramidkv/pyramidkv_utils.py`, `StreamingLLMKVCluster.update_kv`:
keep the first `kv_size - window_size` tokens (the "sinks") and the last `window_size` tokens, the
same positions for every head and layer; no compression when the prompt is shorter than kv_size.
`n_sink` (not in KVCache-Factory) keeps the paper's form instead: `n_sink` first tokens plus the
most recent `kv_size - n_sink`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from llmlab.errors import UserError
from llmlab.methods.kv.base import KVPress, Prefill


@dataclass
class StreamingLLM(KVPress):
    name: ClassVar[str] = "streamingllm"

    kv_size: int | None = 128
    window_size: int = 32     # DynamicKV run/longbench/pred.py: window 32 for snapkv/streamingllm/h2o
    n_sink: int | None = None  # null: KVCache-Factory (first kv_size - window_size); 4: the StreamingLLM paper

    def _check(self, lm=None) -> None:
        super()._check(lm)
        if self.n_sink is not None and not 0 <= self.n_sink < self.kv_size:
            raise UserError(f"streamingllm: n_sink ({self.n_sink}) must be in [0, kv_size={self.kv_size}); "
                            "set method.n_sink=4 (the paper) or null (KVCache-Factory).")

    def select(self, p: Prefill) -> torch.Tensor | None:
        if p.n < self.kv_size:
            return None
        prefix = p.n - self.window_size
        if self.n_sink is None:
            keep = torch.arange(self.kv_size - self.window_size, device=p.keys.device)
        else:  # n_sink first tokens + the most recent (kv_size - n_sink) of which window_size are the window
            recent = self.kv_size - self.window_size - self.n_sink
            keep = torch.cat([torch.arange(self.n_sink, device=p.keys.device),
                              torch.arange(prefix - recent, prefix, device=p.keys.device)])
        return keep.expand(p.batch, p.kv_heads, -1)
