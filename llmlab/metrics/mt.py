"""Corpus BLEU and chrF with sacrebleu, each with its signature (how it was computed).

BLEU's tokenizer follows the target language as sacrebleu recommends and the MT papers report:
"zh" for Chinese targets, "13a" otherwise; chrF is sacrebleu's default chrF2 (character 6-grams,
beta 2). Both are corpus-level, x100 as sacrebleu prints them."""

from __future__ import annotations

from llmlab.metrics.registry import register

register("bleu", "sacrebleu corpus BLEU (tokenizer 13a, or zh for Chinese targets; signature in info), x100", unit="x100")
register("chrf", "sacrebleu corpus chrF2 (character 6-grams, beta 2; signature in info), x100", unit="x100")


def bleu(hypotheses: list[str], references: list[str], target_lang: str) -> tuple[float, str]:
    from sacrebleu.metrics import BLEU

    metric = BLEU(tokenize="zh" if target_lang == "zh" else "13a")
    score = metric.corpus_score(hypotheses, [references])
    return score.score, str(metric.get_signature())


def chrf(hypotheses: list[str], references: list[str]) -> tuple[float, str]:
    from sacrebleu.metrics import CHRF

    metric = CHRF()
    score = metric.corpus_score(hypotheses, [references])
    return score.score, str(metric.get_signature())
