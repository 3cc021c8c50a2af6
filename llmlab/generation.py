"""Text generation: greedy decoding with an explicit cache, and sampling (temperature, top-p, n, seed).

`greedy_generate` is written out (rather than `model.generate`) so that a KV press may compress
the cache at the end of prefill and leave layers with different lengths: decoding passes
explicit position ids that continue from the original prompt length, and no attention mask
(prompts in a batch have equal length, so none is needed). `greedy_generate_padded` batches
prompts of different lengths (no press). `sample` draws `n` continuations per prompt with
`Sampling` settings, seeded per prompt, so a prompt's samples do not depend on what else is in
the run; temperature 0 is greedy. `generate_text` is the text-in, text-out interface every
backend offers (local LM, an OpenAI-compatible API, a replayed outputs file).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from llmlab.batching import pad_id, padded


@torch.inference_mode()
def greedy_generate(
    lm,
    input_ids: torch.Tensor | list[int],
    max_new_tokens: int,
    stop_ids: set[int] | None = None,
    stop_strings: tuple[str, ...] = (),
    min_new_tokens: int = 0,
    progress_desc: str | None = None,
) -> list[list[int]]:
    """Greedy continuation of a batch of equal-length prompts; returns the new token ids per row.

    A row stops at an EOS/`stop_ids` token (not included) or when its decoded text contains a
    `stop_strings` item; the loop ends when every row has stopped or `max_new_tokens` is reached.
    Before `min_new_tokens` tokens, stop tokens are masked out (as `generate(min_length=...)`).
    `progress_desc` shows the decoding's progress (for long generations).
    """
    model = lm.model
    if not torch.is_tensor(input_ids):
        input_ids = torch.tensor([list(input_ids)])
    input_ids = input_ids.to(lm.device)
    batch, length = input_ids.shape
    stop = set(stop_ids or ()) | _eos_ids(lm)
    cache = _new_cache(model)
    out = model(input_ids=input_ids, cache=cache, use_cache=True, logits_to_keep=1)
    generated: list[list[int]] = [[] for _ in range(batch)]
    done = [False] * batch
    steps = range(max_new_tokens)
    if progress_desc:  # a long decode shows its own progress (a bar on a terminal, a log line every 30 s elsewhere)
        from llmlab.progress import progress

        steps = progress(steps, desc=progress_desc, unit="token")
    for step in steps:
        logits = out.logits[:, -1, :]
        if step < min_new_tokens and stop:
            logits = logits.clone()
            logits[:, [t for t in stop if t < logits.shape[-1]]] = float("-inf")
        next_tok = logits.argmax(dim=-1)
        finished = (lambda ids: any(s in lm.tokenizer.decode(ids[-16:]) for s in stop_strings)) if stop_strings else None
        _advance(next_tok.tolist(), generated, done, stop, finished)
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


def _advance(tokens: list[int], generated: list[list[int]], done: list[bool], stop: set[int], finished) -> None:
    """Append each row's next token unless the row is done; a stop token (not kept) or
    `finished(row)` ends the row."""
    for i, tok in enumerate(tokens):
        if done[i]:
            continue
        if tok in stop:
            done[i] = True
            continue
        generated[i].append(tok)
        if finished is not None and finished(generated[i]):
            done[i] = True


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
    cache = _new_cache(model)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True,
                logits_to_keep=1)
    generated: list[list[int]] = [[] for _ in prompts]
    done = [max_new_tokens <= 0] * len(prompts)
    next_position = positions[:, -1:] + 1
    for step in range(max_new_tokens):
        next_tok = out.logits[:, -1, :].argmax(dim=-1)
        _advance(next_tok.tolist(), generated, done, stop, finished)
        if all(done) or step == max_new_tokens - 1:
            break
        mask = torch.cat([mask, mask.new_ones((len(prompts), 1))], dim=1)
        out = model(input_ids=next_tok[:, None], attention_mask=mask, position_ids=next_position,
                    cache=cache, use_cache=True)
        next_position = next_position + 1
    return generated


@dataclass(frozen=True)
class Sampling:
    """How to generate: temperature 0 is greedy; `n` continuations per prompt; `seed` makes the
    draws repeatable (per prompt: the seed and the prompt's index); `stop` strings end a text
    (not kept)."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    n: int = 1
    seed: int = 0
    stop: tuple[str, ...] = ()

    def __post_init__(self):
        from llmlab.errors import UserError

        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.n < 1 or self.max_new_tokens < 1:
            raise UserError(f"sampling settings out of range: temperature={self.temperature} (>= 0), top_p="
                            f"{self.top_p} (in (0, 1]), n={self.n} (>= 1), max_new_tokens={self.max_new_tokens} (>= 1).")
        object.__setattr__(self, "stop", tuple(self.stop or ()))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def cut_at_stop(text: str, stop: tuple[str, ...]) -> str:
    """`text` up to the first stop string (the stop string itself dropped)."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return text if cut < 0 else text[:cut]


@torch.inference_mode()
def sample(lm, prompts: list[list[int]], sampling: Sampling, chunk: int = 16) -> list[list[list[int]]]:
    """`sampling.n` continuations (new token ids) of each prompt. Greedy (temperature 0) decodes
    each prompt once, batched, and repeats it n times; otherwise each prompt's samples are drawn
    by `model.generate` (do_sample) in chunks of `chunk`, under a seed of (seed, prompt index,
    chunk index), so they do not depend on batching or on the other prompts."""
    if sampling.greedy:
        finished = None
        if sampling.stop:
            finished = lambda ids: any(s in lm.tokenizer.decode(ids[-32:]) for s in sampling.stop)  # noqa: E731
        outs = greedy_generate_padded(lm, prompts, sampling.max_new_tokens, finished=finished)
        return [[list(o) for _ in range(sampling.n)] for o in outs]
    pad, stop = pad_id(lm.tokenizer), _eos_ids(lm)
    results = []
    for index, row in enumerate(prompts):
        drawn: list[list[int]] = []
        for c, start in enumerate(range(0, sampling.n, chunk)):
            k = min(chunk, sampling.n - start)
            ids = torch.tensor([row], device=lm.device)
            with torch.random.fork_rng(devices=[lm.device] if lm.device.type == "cuda" else []):
                torch.manual_seed(hash((sampling.seed, index, c)) % (2**31))
                out = lm.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True,
                                        temperature=sampling.temperature, top_p=sampling.top_p,
                                        top_k=sampling.top_k or None, num_return_sequences=k,
                                        max_new_tokens=sampling.max_new_tokens, pad_token_id=pad,
                                        **({"stop_strings": list(sampling.stop), "tokenizer": lm.tokenizer}
                                           if sampling.stop else {}))
            for seq in out[:, len(row):].tolist():
                new = []
                for tok in seq:
                    if tok in stop:
                        break
                    new.append(tok)
                drawn.append(new)
        results.append(drawn)
    return results


def generate_text(lm, prompts: list, sampling: Sampling, chat: bool | None = None) -> list[list[str]]:
    """Text continuations of each prompt (a string, or a list of chat messages), `sampling.n` each.
    A string is put in the chat template when `chat` (default: the model spec's `chat`)."""
    chat = bool(lm.spec.get("chat", False)) if chat is None else chat
    rows = [lm.encode_messages(p) if isinstance(p, list) else lm.encode(p, chat=chat) for p in prompts]
    rows = [r[-lm.max_length:] for r in rows]
    return [[cut_at_stop(lm.decode(ids), sampling.stop) for ids in outs] for outs in sample(lm, rows, sampling)]


def _new_cache(model):
    from transformers import DynamicCache  # imported on first use: a run refused by its checks never pays for it

    return DynamicCache(config=model.config)
