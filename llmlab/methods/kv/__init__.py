"""KV-cache compression presses (compress once at the end of prefill): fullkv, streamingllm, h2o,
snapkv, pyramidkv, dynamickv. The shared plumbing is in `base.py`; each module is its selection rule."""

from llmlab.methods.kv.base import KVPress, Prefill, attention_modules

__all__ = ["KVPress", "Prefill", "attention_modules"]
