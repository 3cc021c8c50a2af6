"""`model=api` throughput under a local OpenAI-compatible server that takes 50 ms per request:
requests/s with concurrency 1 and 8, then a second pass that must send nothing (the on-disk cache).

    python scripts/bench_api_backend.py [n_prompts]      # default 64"""

from __future__ import annotations

import sys
import tempfile
import time

from llmlab.generation import Sampling
from llmlab.models import api
from llmlab.models.echo_server import EchoServer

if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    server = EchoServer(delay=0.05)
    prompts = [[{"role": "user", "content": f"Please provide the German translation for the following sentence: line {i}"}]
               for i in range(n)]
    for concurrency in (1, 8):
        with tempfile.TemporaryDirectory() as cache:
            lm = api.load({"base_url": server.url, "model": "echo", "concurrency": concurrency, "cache_dir": cache})
            before = server.requests
            start = time.perf_counter()
            lm.generate(prompts, Sampling(max_new_tokens=32))
            wall = time.perf_counter() - start
            print(f"concurrency {concurrency}: {server.requests - before} requests in {wall:.2f} s = {n / wall:.1f} requests/s")
            if concurrency == 8:
                before = server.requests
                start = time.perf_counter()
                lm.generate(prompts, Sampling(max_new_tokens=32))
                print(f"second pass: {server.requests - before} requests, {lm.usage['cache_hits']} answers from the cache, "
                      f"{time.perf_counter() - start:.2f} s")
    server.close()
