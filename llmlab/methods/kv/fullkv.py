"""FullKV: the uncompressed cache (the reference row); records the KV bytes it holds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from llmlab.methods.kv.base import KVPress


@dataclass
class FullKV(KVPress):
    name: ClassVar[str] = "fullkv"
    compresses: ClassVar[bool] = False

    kv_size: int | None = None  # ignored (the whole prompt is kept); present so kv_size sweeps may include this row
