"""Corpus BLEU and chrF with sacrebleu, each with its signature (how it was computed).

BLEU's tokenizer follows the target language as sacrebleu recommends and the MT papers report:
"zh" for Chinese targets, "13a" otherwise; chrF is sacrebleu's default chrF2 (character 6-grams,
beta 2). Both are corpus-level, x100 as sacrebleu prints them."""

from __future__ import annotations

from llmlab.metrics.registry import register

register("bleu", "sacrebleu corpus BLEU (tokenizer 13a, or zh for Chinese targets; signature in info), x100", unit="x100")
register("chrf", "sacrebleu corpus chrF2 (character 6-grams, beta 2; signature in info), x100", unit="x100")
register("comet", "COMET system score (the mean segment score of the model named in info, e.g. wmt20-comet-da, "
         "the ChatGPT4MT paper's primary metric), as unbabel-comet computes it (llmlab's port, metrics/comet.py)")


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


def comet(sources: list[str], hypotheses: list[str], references: list[str], model: str,
          batch_size: int = 16) -> tuple[float, list[float], str]:
    """COMET's system score (the mean segment score), the segment scores, and what computed them. `model` is a
    checkpoint (checkpoints/model.ckpt), its directory, or a hub name (Unbabel/wmt20-comet-da); llmlab's port of
    unbabel-comet's regression estimator (metrics/comet.py) scores it."""
    from llmlab.metrics import comet as port

    scorer = port.load(model)
    scores = scorer.segment_scores(sources, hypotheses, references, batch_size=batch_size)
    return (sum(scores) / max(1, len(scores)), scores,
            f"llmlab's port of unbabel-comet {port.PACKAGE_VERSION} regression_metric, model {model}, "
            f"encoder {scorer.hparams.get('pretrained_model')}")
