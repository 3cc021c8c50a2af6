"""PyramidKV (Cai et al., 2024, "PyramidKV: Dynamic KV Cache Compression based on Pyramidal
Information Funneling"): SnapKV scoring with a per-layer capacity falling linearly over depth.

Official code: KVCache-Factory `pyramidkv/pyramidkv_utils.py`, `PyramidKVCluster.update_kv`:
  base = kv_size - window;  min = base // beta;  max = 2 * base - min   (beta = 20)
  if max >= n - window: max = n - window; min = 2 * base - max
  step = (max - min) // (num_layers - 1);  capacity(layer) = max - layer * step
  n < kv_size: no compression; n < 2 * base: every layer keeps `base` (uniform, as SnapKV).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from llmlab.methods.kv.base import Prefill
from llmlab.methods.kv.snapkv import SnapKV


def pyramid_capacity(kv_size: int, window_size: int, beta: int, n: int, layer: int, num_layers: int) -> int:
    """Prefix tokens kept at `layer` (window excluded), as PyramidKVCluster computes it."""
    base = kv_size - window_size
    if n < 2 * base:
        return base
    lo = base // beta
    hi = 2 * base - lo
    if hi >= n - window_size:
        hi = n - window_size
        lo = 2 * base - hi
    step = (hi - lo) // max(1, num_layers - 1)
    return hi - layer * step


@dataclass
class PyramidKV(SnapKV):
    name: ClassVar[str] = "pyramidkv"

    window_size: int = 8   # DynamicKV run/longbench/pred.py: window 8 for pyramidkv
    beta: int = 20         # KVCache-Factory PyramidKVCluster(beta=20)

    def capacity(self, p: Prefill) -> int:
        return pyramid_capacity(self.kv_size, self.window_size, self.beta, p.n, p.layer_idx, p.num_layers)
