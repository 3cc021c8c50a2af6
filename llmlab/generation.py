"""Greedy decoding with an explicit cache: prefill once, then one token at a time.

Written out (rather than `model.generate`) so that a KV press may compress the cache at the
end of prefill and leave layers with different lengths: decoding passes explicit position ids
that continue from the original prompt length, and no attention mask (prompts in a batch have
equal length, so none is needed).
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

from llmlab.batching import pad_id, padded


@torch.inference_mode()
def greedy_generate(
    lm,
    input_ids: torch.Tensor | list[int],
    max_new_tokens: int,
    stop_ids: set[int] | None = None,
    stop_strings: tuple[str, ...] = (),
    min_new_tokens: int = 0,
) -> list[list[int]]:
    """Greedy continuation of a batch of equal-length prompts; returns the new token ids per row.

    A row stops at an EOS/`stop_ids` token (not included) or when its decoded text contains a
    `stop_strings` item; the loop ends when every row has stopped or `max_new_tokens` is reached.
    Before `min_new_tokens` tokens, stop tokens are masked out (as `generate(min_length=...)`).
    """
    model = lm.model
    if not torch.is_tensor(input_ids):
        input_ids = torch.tensor([list(input_ids)])
    input_ids = input_ids.to(lm.device)
    batch, length = input_ids.shape
    stop = set(stop_ids or ()) | _eos_ids(lm)
    cache = DynamicCache(config=model.config)
    out = model(input_ids=input_ids, cache=cache, use_cache=True, logits_to_keep=1)
    generated: list[list[int]] = [[] for _ in range(batch)]
    done = [False] * batch
    for step in range(max_new_tokens):
        logits = out.logits[:, -1, :]
        if step < min_new_tokens and stop:
            logits = logits.clone()
            logits[:, [t for t in stop if t < logits.shape[-1]]] = float("-inf")
        next_tok = logits.argmax(dim=-1)
        for i, tok in enumerate(next_tok.tolist()):
            if done[i]:
                continue
            if tok in stop:
                done[i] = True
                continue
            generated[i].append(tok)
            if stop_strings and any(s in lm.tokenizer.decode(generated[i][-16:]) for s in stop_strings):
                done[i] = True
        if all(done) or step == max_new_tokens - 1:
            break
        position = torch.full((batch, 1), length + step, dtype=torch.long, device=input_ids.device)
        out = model(
            input_ids=next_tok[:, None],
            cache=cache,
            position_ids=position,
            use_cache=True,
        )
    return generated


def _eos_ids(lm) -> set[int]:
    ids = set()
    eos = getattr(lm.model.generation_config, "eos_token_id", None) if lm.model.generation_config else None
    for value in (eos, lm.tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(v for v in value if isinstance(v, int))
    return ids


@torch.inference_mode()
def greedy_generate_padded(lm, prompts: list[list[int]], max_new_tokens: int, finished=None,
                           batch_size: int = 16) -> list[list[int]]:
    """Greedy continuation of prompts of different lengths, batched with left padding and an
    attention mask (no KV press: use `greedy_generate` for those). A row stops at an EOS token
    (not included), when `finished(new_ids)` says so, or after `max_new_tokens`.

    Rows in one batch get the same argmax as alone up to float rounding of the padded matmuls;
    short probes (knowledge editing) decode several times faster batched than one by one, as
    decoding a small model on a CPU is bound by reading the weights."""
    results: list[list[int]] = []
    for start in range(0, len(prompts), batch_size):
        results += _padded_batch(lm, prompts[start:start + batch_size], max_new_tokens, finished)
    return results


def _padded_batch(lm, prompts, max_new_tokens, finished):
    model, stop = lm.model, _eos_ids(lm)
    ids, mask, positions = padded(prompts, pad_id(lm.tokenizer), lm.device, side="left")
    cache = DynamicCache(config=model.config)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True,
                logits_to_keep=1)
    generated: list[list[int]] = [[] for _ in prompts]
    done = [max_new_tokens <= 0] * len(prompts)
    next_position = positions[:, -1:] + 1
    for step in range(max_new_tokens):
        next_tok = out.logits[:, -1, :].argmax(dim=-1)
        for i, tok in enumerate(next_tok.tolist()):
            if done[i]:
                continue
            if tok in stop:
                done[i] = True
                continue
            generated[i].append(tok)
            if finished is not None and finished(generated[i]):
                done[i] = True
        if all(done) or step == max_new_tokens - 1:
            break
        mask = torch.cat([mask, mask.new_ones((len(prompts), 1))], dim=1)
        out = model(input_ids=next_tok[:, None], attention_mask=mask, position_ids=next_position,
                    cache=cache, use_cache=True)
        next_position = next_position + 1
    return generated
