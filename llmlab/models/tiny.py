"""Tiny random-init models for tests: built from a config, with a tokenizer trained offline.

The tokenizer is a byte-level BPE trained on the standard library's docstrings (see
llmlab.corpus), so it needs no hub and is the same on every machine. Models are seeded,
so the same `seed` gives the same weights.
"""

from __future__ import annotations

from pathlib import Path

import torch

from llmlab.models.cache import cache_dir, atomic_dir

# A small chat template so that chat-template code paths run on tiny models too.
TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

ARCHS = ("llama", "mistral", "qwen2", "gemma3")


def tiny_tokenizer(vocab_size: int = 1024):
    """A byte-level BPE tokenizer with bos/eos/pad, built once and cached on disk."""
    from transformers import PreTrainedTokenizerFast

    path = cache_dir() / f"tiny-tokenizer-{vocab_size}"
    if not (path / "tokenizer.json").exists():
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        from llmlab.corpus import stdlib_docstrings

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=["<pad>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|end|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(list(stdlib_docstrings()), trainer=trainer)
        with atomic_dir(path) as tmp:
            fast = PreTrainedTokenizerFast(
                tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
            )
            fast.chat_template = TINY_CHAT_TEMPLATE
            fast.save_pretrained(tmp)
    return PreTrainedTokenizerFast.from_pretrained(str(path))


def tiny_causal_lm(arch: str = "llama", seed: int = 0, hidden_size: int = 64, num_layers: int = 4,
                   num_heads: int = 4, num_kv_heads: int = 2, vocab_size: int = 1024,
                   max_position_embeddings: int = 4096):
    """A random-init decoder of the given architecture (GQA: `num_kv_heads` < `num_heads`)."""
    import transformers as tf

    if arch not in ARCHS:
        raise ValueError(f"tiny arch must be one of {', '.join(ARCHS)}; got {arch!r}")
    tokenizer = tiny_tokenizer(vocab_size)
    common = dict(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_kv_heads,
        max_position_embeddings=max_position_embeddings, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    if arch == "llama":
        config = tf.LlamaConfig(**common)
    elif arch == "mistral":
        config = tf.MistralConfig(**common, sliding_window=None)
    elif arch == "qwen2":
        config = tf.Qwen2Config(**common)
    else:
        config = tf.Gemma3TextConfig(**common, head_dim=hidden_size // num_heads, sliding_window=512,
                                     layer_types=["full_attention"] * num_layers)
    config._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    model = tf.AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    model.eval()
    return model, tokenizer


def tiny_encoder(seed: int = 0, hidden_size: int = 64, num_layers: int = 2, vocab_size: int = 1024):
    """A random-init BERT-style encoder with the tiny tokenizer."""
    import transformers as tf

    tokenizer = tiny_tokenizer(vocab_size)
    config = tf.BertConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=num_layers,
                           num_attention_heads=4, intermediate_size=hidden_size * 2,
                           max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = tf.AutoModel.from_config(config)
    model.eval()
    return model, tokenizer


def save_tiny(path: Path, arch: str = "llama", seed: int = 0) -> Path:
    """Write a tiny model + tokenizer as a local HF directory (for `model=hf model.path=...` tests)."""
    model, tokenizer = tiny_causal_lm(arch, seed)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return Path(path)
