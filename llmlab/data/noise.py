"""Noisy source sentences as PTvsRI's robustness analysis makes them (analysis/DuA/robust_add_noisy.py and
robust_add_noisy.sh): moses-tokenize, then per sentence word shuffle (k), word dropout (wd) and word blank (wb:
a word replaced by "Ж"), then detokenize. The paper's setting is wd 0, wb 0.1, k 0 (only blanks). The release
draws from torch's global generator unseeded; here one seeded generator runs through the file in order, drawing
exactly as the release does (a shuffle draw and a dropout draw even when k = 0 and wd = 0), so a seed gives
one fixed noisy test set."""

from __future__ import annotations

import random

import torch

BLANK = "Ж"


def word_shuffle(words: list[str], k: float, gen: torch.Generator) -> list[str]:
    noise = torch.rand(len(words), generator=gen).mul_(k)
    perm = torch.arange(len(words)).float().add_(noise).sort()[1]
    return [words[i] for i in perm]


def word_dropout(words: list[str], p: float, gen: torch.Generator, rng: random.Random) -> list[str]:
    keep = torch.rand(len(words), generator=gen)
    out = [w for i, w in enumerate(words) if keep[i] > p]
    return out if out else [words[rng.randint(0, len(words) - 1)]]


def word_blank(words: list[str], p: float, gen: torch.Generator) -> list[str]:
    keep = torch.rand(len(words), generator=gen)
    return [w if keep[i] > p else BLANK for i, w in enumerate(words)]


def add_noise(lines: list[str], lang: str = "en", word_blank_p: float = 0.1, word_dropout_p: float = 0.0,
              shuffle_k: float = 0.0, seed: int = 1, moses: bool = True) -> list[str]:
    """The noisy copy of `lines` (robust_add_noisy.sh's pipeline; `moses=False`: split on whitespace)."""
    gen = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    if moses:
        from sacremoses import MosesDetokenizer, MosesTokenizer

        tok, detok = MosesTokenizer(lang=lang), MosesDetokenizer(lang=lang)
        split = lambda s: tok.tokenize(s, escape=False)  # noqa: E731
        join = detok.detokenize
    else:
        split, join = str.split, " ".join
    out = []
    for line in lines:
        words = split(line.strip())
        if words:
            words = word_shuffle(words, shuffle_k, gen)
            words = word_dropout(words, word_dropout_p, gen, rng)
            words = word_blank(words, word_blank_p, gen)
        out.append(join(words))
    return out
