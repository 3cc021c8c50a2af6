"""Model probes: what a model predicts for a prompt, teacher-forced or generated, in batches.

- `prompt_target_ids`: ids of `prompt + " " + target` and the prompt's length (EasyEdit's split).
- `argmax_on_targets`: teacher-forced argmax tokens at the target positions, with the gold ids.
- `generate_answers`: the first non-blank line of each prompt's greedy continuation.
- `target_nll`: the mean negative log-likelihood per target token, teacher-forced; `response_nll` the same
  for an instruction's response tokenized as instruction tuning trains it.
- `completions_with_gold_nll`: one greedy completion per prompt, and the gold target's NLL beside it.

Rows are batched with left padding; only the positions read go through the LM head (a 262k
vocabulary head over every position costs more than the layers on short prompts).
"""

from __future__ import annotations

import torch

from llmlab.batching import pad_id, padded

BATCH = 8  # probes per forward: logits are batch x target length x vocab (Gemma 3: 262k)


def prompt_target_ids(tokenizer, prompt: str, target: str) -> tuple[list[int], int]:
    """Token ids of `prompt + " " + target` and the number of prompt tokens: the target tokens are
    `ids[n_prompt:]` (EasyEdit's split: the prompt is tokenized alone, the pair together)."""
    n_prompt = len(tokenizer(prompt)["input_ids"])
    ids = list(tokenizer(f"{prompt} {target}")["input_ids"])
    return ids, min(n_prompt, len(ids))


def pair_ids(lm, prompt: str, target: str, chat: bool) -> tuple[list[int], int]:
    """Ids of prompt followed by target, and the prompt's length (chat: target after the template)."""
    if chat and getattr(lm.tokenizer, "chat_template", None):
        head = lm.encode(prompt, chat=True)
        return head + lm.encode(target, add_special_tokens=False), len(head)
    return prompt_target_ids(lm.tokenizer, prompt, target)


def _teacher_forced(lm, rows: list[tuple[list[int], int]]):
    """For each row (ids, prompt length) with target tokens: (row index, the logits predicting the target
    tokens, the target ids). Rows are batched with left padding, so every row's target ends at the last
    column and only the last (longest target + 1) positions go through the LM head."""
    scored = [i for i, (ids, n) in enumerate(rows) if 0 < n < len(ids)]
    for start in range(0, len(scored), BATCH):
        chunk = scored[start:start + BATCH]
        ids, mask, positions = padded([rows[i][0] for i in chunk], pad_id(lm.tokenizer), lm.device, side="left")
        spans = [len(rows[i][0]) - rows[i][1] for i in chunk]
        keep = max(spans) + 1
        logits = lm.model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep).logits
        for b, i in enumerate(chunk):
            yield i, logits[b, keep - 1 - spans[b]:keep - 1], rows[i][0][rows[i][1]:]


def _truncated(ids: list[int], n: int, max_length: int) -> tuple[list[int], int]:
    cut = max(0, len(ids) - max_length)
    return ids[cut:], max(0, n - cut)


@torch.no_grad()
def argmax_on_targets(lm, pairs: list[tuple[str, str]], chat: bool = False) -> list[tuple[list[int], list[int]]]:
    """Teacher-forced argmax predictions at the target positions, and the gold target ids, for each
    (prompt, target) pair."""
    rows = [_truncated(*pair_ids(lm, prompt, target, chat), lm.max_length) for prompt, target in pairs]
    results: list[tuple[list[int], list[int]]] = [([], []) for _ in pairs]
    for i, logits, gold in _teacher_forced(lm, rows):
        results[i] = (logits.argmax(-1).tolist(), gold)
    return results


@torch.no_grad()
def target_nll(lm, pairs: list[tuple[str, str]]) -> list[float | None]:
    """Mean negative log-likelihood (nats per token) of each target after its prompt (`prompt + " " + target`,
    teacher-forced); None when no target token is left after truncation."""
    return rows_nll(lm, [prompt_target_ids(lm.tokenizer, prompt, target) for prompt, target in pairs])


@torch.no_grad()
def response_nll(lm, pairs: list[tuple[str, str]]) -> list[float | None]:
    """Mean NLL per token of each response and the end-of-sequence after its prompt, tokenized as instruction
    tuning trains them: the prompt with special tokens, the response without, then eos."""
    tok = lm.tokenizer
    rows = []
    for prompt, response in pairs:
        head = list(tok(prompt)["input_ids"])
        rows.append((head + list(tok(response, add_special_tokens=False)["input_ids"]) + [tok.eos_token_id], len(head)))
    return rows_nll(lm, rows)


def rows_nll(lm, rows: list[tuple[list[int], int]]) -> list[float | None]:
    """Mean NLL per target token of (ids, prompt length) rows, left-truncated to the model's context."""
    rows = [_truncated(ids, n, lm.max_length) for ids, n in rows]
    out: list[float | None] = [None] * len(rows)
    for i, logits, gold in _teacher_forced(lm, rows):
        logp = torch.log_softmax(logits.float(), dim=-1)
        out[i] = float(-logp.gather(-1, torch.tensor(gold, device=logp.device)[:, None]).mean())
    return out


def has_answer_line(text: str) -> bool:
    """A non-blank line has ended (a newline follows it): the answer is complete."""
    return any(line.strip() for line in text.split("\n")[:-1])


def answer_line(text: str) -> str:
    """The first non-blank line, stripped. Base models often start a raw question's answer on a
    new line, so leading blank lines are skipped rather than read as an empty answer."""
    return next((line.strip() for line in text.split("\n") if line.strip()), "")


def generate_answers(lm, prompts: list[str], chat: bool = False, max_new_tokens: int = 32) -> list[str]:
    """The first non-blank line of the greedy continuation of each prompt (at most
    `max_new_tokens` tokens in all), batched with left padding."""
    from llmlab.generation import greedy_generate_padded

    rows = [lm.encode(p, chat=chat)[-lm.max_length:] for p in prompts]
    outputs = greedy_generate_padded(lm, rows, max_new_tokens, finished=lambda ids: has_answer_line(lm.decode(ids)),
                                     batch_size=BATCH)
    return [answer_line(lm.decode(ids)) for ids in outputs]


def completions_with_gold_nll(lm, prompts: list[str], golds: list[str], sampling, keys: list | None = None,
                              score: bool = True) -> tuple[list[str], list[float | None]]:
    """The first completion of each prompt under `sampling` (no chat template), and `target_nll` of each gold
    after its prompt (None everywhere when `score` is off or the model gives no logits: an API backend)."""
    outs = lm.generate(prompts, sampling, chat=False, keys=keys)
    nll = target_nll(lm, list(zip(prompts, golds))) if score and getattr(lm, "has_logits", False) else [None] * len(prompts)
    return [o[0] for o in outs], nll
