"""Model loading: tiny random models, the embedded SmolLM2 (real weights), the conversion cache."""

import time

import pytest
import torch
import yaml

from conftest import REPO
from llmlab.generation import greedy_generate
from llmlab.models import load
from llmlab.models.cache import atomic_dir, is_complete


def _spec(name):
    return yaml.safe_load((REPO / "conf" / "model" / f"{name}.yaml").read_text())


def test_tiny_llama_is_small_seeded_and_gqa(tiny_lm):
    n = sum(p.numel() for p in tiny_lm.model.parameters())
    assert 50_000 < n < 1_000_000
    cfg = tiny_lm.model.config
    assert cfg.num_key_value_heads < cfg.num_attention_heads
    again = load({"source": "tiny", "arch": "llama"})
    assert all(torch.equal(a, b) for a, b in zip(tiny_lm.model.parameters(), again.model.parameters()))
    assert tiny_lm.tokenizer.decode(tiny_lm.encode("hello world", add_special_tokens=False)) == "hello world"


@pytest.mark.parametrize("arch", ["mistral", "qwen2", "gemma3"])
def test_tiny_archs_generate(arch):
    lm = load({"source": "tiny", "arch": arch})
    out = greedy_generate(lm, lm.encode("def f(x): return"), 5)
    assert len(out[0]) <= 5


def test_batch_generation_matches_single(tiny_lm):
    a, b = tiny_lm.encode("import os and sys"), tiny_lm.encode("the value of pi")
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    batch = greedy_generate(tiny_lm, torch.tensor([a, b]), 6)
    assert batch[0] == greedy_generate(tiny_lm, a, 6)[0]
    assert batch[1] == greedy_generate(tiny_lm, b, 6)[0]


def test_atomic_dir_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "model"
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "model.safetensors").write_text("half")
            raise RuntimeError("killed")
    assert not target.exists() and not list(tmp_path.iterdir())
    with atomic_dir(target) as tmp:
        (tmp / "model.safetensors").write_text("whole")
    assert is_complete(target)


@pytest.mark.embedded
def test_embedded_smollm2_answers_paris_and_reloads_from_cache():
    spec = _spec("smollm2-135m")
    lm = load(spec)  # converts the GGUF once if the cache is cold
    ids = lm.encode("What is the capital of France?", chat=True)
    answer = lm.decode(greedy_generate(lm, ids, 24)[0])
    assert "Paris" in answer
    start = time.perf_counter()
    again = load(spec)
    assert time.perf_counter() - start < 10  # a cached load (~0.4 s idle); a conversion takes ~30 s
    assert again.model.config.num_hidden_layers == 30
