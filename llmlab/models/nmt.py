"""Sentence translation with an encoder-decoder (mBART conventions), shared by NMT training, the NMT task and
its probes.

mBART's layout (fairseq `translation_from_pretrained_bart`, transformers' MBart): the source is
`tokens </s> [src_lang]`, the target `tokens </s> [tgt_lang]`, and the decoder starts from `[tgt_lang]` (MBart's
`shift_tokens_right` moves the last token of the labels to the front). The language tokens are the model spec's
`lang_codes` (two-letter code -> token; mBART-cc25's `en_XX`, `de_DE`, ... by default).
"""

from __future__ import annotations

import math

import torch

def require_seq2seq(who: str, spec: dict, instead: str = "") -> None:
    """Refuse, before it loads, a model that is not an encoder-decoder (`who`: "task nmt", "method=ri")."""
    if (spec or {}).get("kind") != "seq2seq":
        from llmlab.errors import UserError

        raise UserError(f"{who} runs an encoder-decoder translation model; model {spec.get('name')} is "
                        f"kind={spec.get('kind') or 'causal'}. Use model=nmt-small or model=mbart-large-cc25{instead}.")


MBART_CODES = {"en": "en_XX", "de": "de_DE", "ro": "ro_RO", "zh": "zh_CN", "fr": "fr_XX", "es": "es_XX"}


def lang_id(lm, lang: str) -> int:
    code = dict(lm.spec.get("lang_codes") or MBART_CODES).get(lang, lang)
    idx = lm.tokenizer.convert_tokens_to_ids(code)
    if idx is None or idx == lm.tokenizer.unk_token_id:
        raise ValueError(f"the tokenizer of {lm.name} has no language token {code!r} for {lang!r}")
    return int(idx)


def encode(lm, text: str, lang: str, max_length: int) -> list[int]:
    """`tokens </s> [lang]`, the tokens cut to `max_length - 2`."""
    ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"][: max(1, max_length - 2)]
    return ids + [lm.tokenizer.eos_token_id, lang_id(lm, lang)]


def example(lm, source: str, target: str, src: str, tgt: str, max_length: int) -> dict:
    return {"input_ids": encode(lm, source, src, max_length), "labels": encode(lm, target, tgt, max_length)}


def collate(rows: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded `input_ids`/`attention_mask`, and with targets `labels` (-100 at padding) and the
    `decoder_input_ids` teacher forcing feeds."""
    width = max(len(r["input_ids"]) for r in rows)
    out = {"input_ids": torch.full((len(rows), width), pad_id), "attention_mask": torch.zeros(len(rows), width,
                                                                                              dtype=torch.long)}
    for i, r in enumerate(rows):
        out["input_ids"][i, : len(r["input_ids"])] = torch.tensor(r["input_ids"])
        out["attention_mask"][i, : len(r["input_ids"])] = 1
    if "labels" in rows[0]:
        lwidth = max(len(r["labels"]) for r in rows)
        out["labels"] = torch.full((len(rows), lwidth), -100)
        for i, r in enumerate(rows):
            out["labels"][i, : len(r["labels"])] = torch.tensor(r["labels"])
        out["decoder_input_ids"] = shift_right(out["labels"], pad_id)
    return out


def shift_right(labels: torch.Tensor, pad_id: int) -> torch.Tensor:
    """mBART's decoder inputs: the labels' last non-pad token (the language tag) first, then the rest shifted
    right by one (transformers' MBart `shift_tokens_right`, given explicitly so that a loss computed outside the
    model, as the Trainer's label smoothing does, sees the same decoder inputs)."""
    from transformers.models.mbart.modeling_mbart import shift_tokens_right

    return shift_tokens_right(labels.masked_fill(labels.eq(-100), pad_id), pad_id)


def batches(lm, sources: list[str], targets: list[str] | None, src: str, tgt: str, max_length: int,
            batch_size: int):
    """Teacher-forcing batches (inputs, labels) on the model's device, in order."""
    device = lm.device
    for start in range(0, len(sources), batch_size):
        rows = [{"input_ids": encode(lm, s, src, max_length)} if targets is None else
                example(lm, s, targets[start + i], src, tgt, max_length)
                for i, s in enumerate(sources[start:start + batch_size])]
        yield {k: v.to(device) for k, v in collate(rows, lm.tokenizer.pad_token_id).items()}


@torch.no_grad()
def translate(lm, sources: list[str], src: str, tgt: str, beam: int = 5, max_new_tokens: int = 200,
              batch_size: int = 32, max_length: int = 1024, length_penalty: float = 1.0) -> list[str]:
    """Beam search from `[tgt_lang]` (fairseq-generate's defaults: beam 5, length penalty 1, at most 200 new
    tokens), decoded without special tokens."""
    lm.model.eval()
    positions = getattr(lm.model.config, "max_position_embeddings", None)
    if positions:  # a decoder cannot run past its learned positions (a small model's may be fewer than 200)
        max_new_tokens = min(max_new_tokens, int(positions) - 1)
        max_length = min(max_length, int(positions))
    out: list[str] = []
    for batch in batches(lm, sources, None, src, tgt, max_length, batch_size):
        ids = lm.model.generate(**batch, decoder_start_token_id=lang_id(lm, tgt), num_beams=beam,
                                max_new_tokens=max_new_tokens, length_penalty=length_penalty,
                                early_stopping=True)
        out += [t.strip() for t in lm.tokenizer.batch_decode(ids, skip_special_tokens=True)]
    return out


def label_smoothed_nll(logits: torch.Tensor, labels: torch.Tensor, epsilon: float) -> tuple[torch.Tensor, int]:
    """fairseq's label_smoothed_cross_entropy summed over the non-padding target tokens: (1 - eps) * nll +
    eps * mean over the vocabulary of -log p. Returns (sum, number of tokens)."""
    mask = labels.ne(-100)
    lprobs = torch.log_softmax(logits.float(), dim=-1)
    gold = labels.clamp(min=0).unsqueeze(-1)
    nll = -lprobs.gather(-1, gold).squeeze(-1)
    smooth = -lprobs.mean(-1)
    loss = (1.0 - epsilon) * nll + epsilon * smooth
    return loss[mask].sum(), int(mask.sum())


@torch.no_grad()
def loss_bits(lm, sources: list[str], targets: list[str], src: str, tgt: str, label_smoothing: float = 0.0,
              batch_size: int = 64, max_length: int = 1024) -> float:
    """Mean per-token (label-smoothed) cross-entropy of the references, in bits (analysis/lls.py's `get_loss`:
    the criterion's loss / sample size / ln 2)."""
    lm.model.eval()
    total, count = 0.0, 0
    for batch in batches(lm, sources, targets, src, tgt, max_length, batch_size):
        logits = lm.model(**{k: v for k, v in batch.items()}).logits
        s, n = label_smoothed_nll(logits, batch["labels"], label_smoothing)
        total, count = total + float(s), count + n
    return total / max(1, count) / math.log(2)
