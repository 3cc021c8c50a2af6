"""`model=api`: a chat model behind any OpenAI-compatible endpoint (OpenAI, or a model served by vLLM,
TGI or llama.cpp on another machine: `model.base_url=http://host:8000/v1 model.model=<served name>`).

Text in, text out (no logits: tasks that read logits refuse it before loading). The key is read from
the environment variable `api_key_env` and never written to results. Requests run `concurrency` at
a time; the openai client retries rate limits (429), server errors (5xx), timeouts and connection
errors with exponential backoff (`max_retries`), each request bounded by `timeout` seconds. Every
answer is cached on disk, keyed by (endpoint, model, messages, sampling settings, seed): a re-run or a
resumed sweep asks nothing again. `usage` counts requests sent and answers read from the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from llmlab.errors import UserError


@dataclass
class ApiModel:
    base_url: str
    model: str
    client: object
    cache: Path
    concurrency: int = 8
    name: str = "api"
    spec: dict = field(default_factory=dict)
    usage: dict = field(default_factory=lambda: {"requests": 0, "cache_hits": 0})
    has_logits = False
    tokenizer = None

    def __post_init__(self):
        self._lock = threading.Lock()

    @property
    def max_length(self) -> int:
        return 1 << 30

    def generate(self, prompts: list, sampling, chat: bool | None = None, keys: list | None = None) -> list[list[str]]:
        with ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
            return list(pool.map(lambda p: self._one(p, sampling), prompts))

    def _one(self, prompt, sampling) -> list[str]:
        messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": str(prompt)}]
        settings = {"temperature": sampling.temperature, "top_p": sampling.top_p, "max_tokens": sampling.max_new_tokens,
                    "n": sampling.n, "seed": sampling.seed, "stop": list(sampling.stop) or None}
        key = hashlib.sha256(json.dumps([self.base_url, self.model, messages, settings], sort_keys=True,
                                        ensure_ascii=False).encode()).hexdigest()
        path = self.cache / f"{key}.json"
        if path.exists():
            with self._lock:
                self.usage["cache_hits"] += 1
            return json.loads(path.read_text(encoding="utf-8"))["texts"]
        try:
            reply = self.client.chat.completions.create(model=self.model, messages=messages,
                                                        **{k: v for k, v in settings.items() if v is not None})
        except Exception as err:  # after the client's retries
            raise UserError(f"model=api: {self.base_url} failed for model {self.model!r}: {type(err).__name__}: {err}. "
                            f"Check model.base_url, model.model and the key in ${self.spec.get('api_key_env')}.") from None
        texts = [c.message.content or "" for c in sorted(reply.choices, key=lambda c: c.index)]
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps({"texts": texts, "settings": settings}, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)
        with self._lock:
            self.usage["requests"] += 1
        return texts


def load(spec: dict, device: str = "cpu", dtype: str | None = None, seed: int = 0) -> ApiModel:
    from openai import OpenAI

    from llmlab.models.cache import cache_dir

    base_url, model = spec.get("base_url"), spec.get("model")
    if not base_url or not model:
        raise UserError("model=api needs model.base_url (e.g. https://api.openai.com/v1, or http://host:8000/v1 for a "
                        "vLLM/TGI/llama.cpp server) and model.model (the served model's name).")
    key_env = spec.get("api_key_env") or "OPENAI_API_KEY"
    client = OpenAI(base_url=str(base_url), api_key=os.environ.get(key_env) or "none",
                    max_retries=int(spec.get("max_retries", 5)), timeout=float(spec.get("timeout", 60)))
    cache = Path(str(spec.get("cache_dir") or cache_dir() / "api_cache")).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    return ApiModel(base_url=str(base_url), model=str(model), client=client, cache=cache,
                    concurrency=int(spec.get("concurrency", 8)), name=spec.get("name") or f"api:{model}", spec=spec)
