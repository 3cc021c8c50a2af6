"""Corpus BLEU and chrF with sacrebleu, each with its signature (how it was computed).

BLEU's tokenizer follows the target language as sacrebleu recommends and the MT papers report:
"zh" for Chinese targets, "13a" otherwise; chrF is sacrebleu's default chrF2 (character 6-grams,
beta 2). Both are corpus-level, x100 as sacrebleu prints them."""

from __future__ import annotations

from llmlab.metrics.registry import register

register("bleu", "sacrebleu corpus BLEU (tokenizer 13a, or zh for Chinese targets; signature in info), x100", unit="x100")
register("chrf", "sacrebleu corpus chrF2 (character 6-grams, beta 2; signature in info), x100", unit="x100")
register("comet", "COMET system score (the mean segment score of the model named in info, e.g. wmt20-comet-da, "
         "the ChatGPT4MT paper's primary metric), as unbabel-comet returns it")


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


def comet_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("comet") is not None


def comet(sources: list[str], hypotheses: list[str], references: list[str], model: str,
          batch_size: int = 16) -> tuple[float, str]:
    """unbabel-comet's system score of (source, hypothesis, reference) triples; `model` is a checkpoint file
    (checkpoints/model.ckpt) or a model name the package downloads (Unbabel/wmt20-comet-da). Returns the score
    and what computed it."""
    from pathlib import Path

    import comet as unbabel_comet

    path = model if Path(model).expanduser().is_file() else unbabel_comet.download_model(model)
    scorer = unbabel_comet.load_from_checkpoint(path)
    out = scorer.predict([{"src": s, "mt": h, "ref": r} for s, h, r in zip(sources, hypotheses, references)],
                         batch_size=batch_size, gpus=0, progress_bar=False)
    version = getattr(unbabel_comet, "__version__", "?")
    return float(out.system_score), f"unbabel-comet {version}, model {model}"
