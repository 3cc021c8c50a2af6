"""Sentence-level machine translation scored with corpus BLEU and chrF (sacrebleu).

A direction (`direction: ende`: two-letter source and target codes) reads the source and reference
lines of a parallel test set: Flores-200 devtest files `<data_dir>/<lang>.devtest` (eng_Latn, deu_Latn,
ron_Latn, zho_Hans, as in Romainpkq/ChatGPT4MT data/multilingual_translation/) by default. The model
is asked for each line: with a prompt strategy method (methods with PromptStrategy give the messages)
or, with `method=none`, ChatGPT4MT's baseline (template/chatgpt.py: no system message, "Please provide
the [TGT] translation for the following sentence: <line>"). With
`model=replay` a published outputs file (one line per source line, `format: lines`) answers instead.

Besides BLEU and chrF, `target_script` records the share of hypotheses written in the target's script
(Han characters for zh, Latin otherwise): a published file in the wrong language shows there.

COMET (the paper's primary metric, wmt20-comet-da) is scored when `comet_model` names a checkpoint (its
checkpoints/model.ckpt or its directory; or a hub name such as Unbabel/wmt20-comet-da with the hub on), by
llmlab's port of unbabel-comet's estimator (metrics/comet.py: the package itself cannot be installed beside
transformers 5); each prediction gets its segment score. Without `comet_model` it is skipped and `info.comet` says so.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from llmlab.capabilities import PromptStrategy
from llmlab.data.parallel import read_lines
from llmlab.errors import UserError
from llmlab.generation import Sampling
from llmlab.metrics.mt import bleu, chrf, comet
from llmlab.metrics.registry import register
from llmlab.tasks.base import BatchedTask

register("target_script", "hypotheses written in the target language's script (Han for zh, Latin otherwise), "
         "% of lines", unit="%")

LANGS = {"en": ("English", "eng_Latn"), "de": ("German", "deu_Latn"), "ro": ("Romanian", "ron_Latn"),
         "zh": ("Chinese", "zho_Hans")}
ANSWER_RULES = ("first_nonempty_line", "first_line")
HAN = re.compile(r"[\u4e00-\u9fff]")
LATIN = re.compile(r"[A-Za-z]")


def in_script(text: str, lang: str) -> bool:
    han, latin = len(HAN.findall(text)), len(LATIN.findall(text))
    return han > latin if lang == "zh" else latin >= han and latin > 0


@dataclass
class Translation(BatchedTask):
    name: ClassVar[str] = "translation"
    honours: ClassVar[tuple] = (PromptStrategy,)
    needs_weights: ClassVar[bool] = False
    limit_means: ClassVar[str] = "the first N sentences of the test set"
    main_metric: ClassVar[str] = "bleu"

    direction: str = "ende"               # source and target codes: en, de, ro, zh
    data_dir: str | None = None           # a dir of Flores-200 devtest files (<lang>.devtest)
    source_path: str | None = None        # or explicit files (WMT sets): one sentence per line
    reference_path: str | None = None
    temperature: float = 0.0              # ChatGPT4MT: temperature 0 unless swept
    max_new_tokens: int = 256
    batch_size: int = 8
    comet_model: str | None = None        # a COMET checkpoint file, or a model name (Unbabel/wmt20-comet-da); null: no COMET
    comet_batch_size: int = 16
    answer: str = "first_nonempty_line"   # the hypothesis: the first line with text (or first_line: up to the first newline)

    def __post_init__(self):
        if self.answer not in ANSWER_RULES:
            raise UserError(f"translation: answer={self.answer!r} is not a rule; use first_nonempty_line (the first "
                            f"line of the output that has text) or first_line (the output up to its first newline, "
                            f"empty when the model starts with one).")
        if len(self.direction) != 4 or self.direction[:2] not in LANGS or self.direction[2:] not in LANGS:
            raise UserError(f"translation: direction={self.direction!r} must be two language codes from "
                            f"{', '.join(LANGS)} (e.g. ende, zhen).")

    @property
    def source_lang(self) -> str:
        return self.direction[:2]

    @property
    def target_lang(self) -> str:
        return self.direction[2:]

    def paths(self) -> tuple[Path, Path]:
        if self.source_path and self.reference_path:
            return Path(str(self.source_path)), Path(str(self.reference_path))
        if not self.data_dir:
            raise UserError("translation: no test set. Set task.data_dir=<dir of Flores-200 <lang>.devtest files> "
                            "(ChatGPT4MT data/multilingual_translation/) or task.source_path and task.reference_path.")
        d = Path(str(self.data_dir))
        return d / f"{LANGS[self.source_lang][1]}.devtest", d / f"{LANGS[self.target_lang][1]}.devtest"

    def check_data(self) -> None:
        src, ref = self.paths()
        for p in (src, ref):
            if not p.is_file():
                raise UserError(f"translation: {p} does not exist (direction {self.direction}); give the test set's "
                                f"directory (task.data_dir) or files (task.source_path, task.reference_path).")
        self.check_comet()
        n_src, n_ref = (len(read_lines(p)) for p in (src, ref))
        if n_src != n_ref:
            raise UserError(f"translation: {src} has {n_src} lines but {ref} has {n_ref}; a parallel test set "
                            f"needs one reference per source line.")

    def check_comet(self) -> None:
        """Before any model loads: COMET asked for, but the checkpoint cannot be had."""
        if not self.comet_model:
            return
        from llmlab.paths import hub_offline

        path = Path(str(self.comet_model)).expanduser()
        if not (path.is_file() or (path / "checkpoints" / "model.ckpt").is_file()) and hub_offline():
            raise UserError(f"translation: task.comet_model={self.comet_model} is not a COMET checkpoint here, so it "
                            f"would be downloaded, but the hub is off (HF_HUB_OFFLINE=1, llmlab's default). Give a "
                            f"downloaded model (<dir>/checkpoints/model.ckpt or <dir>, with <dir>/hparams.yaml) or "
                            f"allow the hub with HF_HUB_OFFLINE=0, or set task.comet_model=null for BLEU and chrF only.")

    def items(self, lm, ctx) -> list[dict]:
        src, ref = self.paths()
        sources, references = read_lines(src), read_lines(ref)
        return [{"index": i, "source": s, "reference": r} for i, (s, r) in enumerate(zip(sources, references))]

    def messages(self, method, item) -> list[dict]:
        if isinstance(method, PromptStrategy):
            return method.messages({"source": item["source"], "source_lang": LANGS[self.source_lang][0],
                                    "target_lang": LANGS[self.target_lang][0], "direction": self.direction})
        return [{"role": "user", "content": f"Please provide the {LANGS[self.target_lang][0]} translation for the "
                                            f"following sentence: {item['source']}"}]  # ChatGPT4MT template/chatgpt.py

    def run_batch(self, lm, method, batch, ctx) -> list[dict]:
        """One line per sentence: generation stops at a newline. A model that starts its answer with a newline
        (a base model after a chat prompt) would give an empty line; with `answer: first_nonempty_line` those
        sentences are generated again without the stop and their first line with text is the hypothesis
        (`after_newline` marks them in predictions.jsonl)."""
        sampling = Sampling(max_new_tokens=self.max_new_tokens, temperature=self.temperature, seed=ctx.seed,
                            stop=("\n",))
        messages, keys = [self.messages(method, it) for it in batch], [it["index"] for it in batch]
        texts = [out[0].strip() for out in lm.generate(messages, sampling, chat=True, keys=keys)]
        empty = [i for i, text in enumerate(texts) if not text] if self.answer == "first_nonempty_line" else []
        if empty:
            whole = lm.generate([messages[i] for i in empty], dataclasses.replace(sampling, stop=()), chat=True,
                                keys=[keys[i] for i in empty])
            for i, out in zip(empty, whole):
                texts[i] = next((line.strip() for line in out[0].splitlines() if line.strip()), "")
        return [{**it, "prediction": text, **({"after_newline": True} if i in empty else {})}
                for i, (it, text) in enumerate(zip(batch, texts))]

    def aggregate(self, predictions: list[dict], ctx) -> dict[str, float]:
        metrics, self._signatures = self.scores(predictions)
        return metrics

    def info(self, items, method, ctx) -> dict:
        return dict(getattr(self, "_signatures", {}))

    def scores(self, predictions: list[dict]) -> tuple[dict, dict]:
        hyps, refs = [p["prediction"] for p in predictions], [p["reference"] for p in predictions]
        b, b_sig = bleu(hyps, refs, self.target_lang)
        c, c_sig = chrf(hyps, refs)
        script = 100.0 * sum(in_script(h, self.target_lang) for h in hyps) / max(1, len(hyps))
        metrics = {"bleu": b, "chrf": c, "target_script": script}
        facts = {"bleu_signature": b_sig, "chrf_signature": c_sig, "direction": self.direction,
                 "answer": self.answer, "answers_after_newline": sum(bool(p.get("after_newline")) for p in predictions)}
        if self.comet_model:
            metrics["comet"], segments, facts["comet"] = comet([p["source"] for p in predictions], hyps, refs,
                                                               str(self.comet_model), self.comet_batch_size)
            for p, score in zip(predictions, segments):
                p["comet"] = score
        else:
            facts["comet"] = "skipped: task.comet_model is not set (a COMET checkpoint, e.g. Unbabel/wmt20-comet-da)"
        return metrics, facts
