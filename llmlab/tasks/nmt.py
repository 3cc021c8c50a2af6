"""Translation by an encoder-decoder NMT model on named test sets: in domain, out of domain, and a noisy copy of
one of them (PTvsRI's columns). Beam search as fairseq-generate / fairseq-interactive in the release's scripts
(beam 5, length penalty 1, at most 200 new tokens); sacrebleu BLEU and chrF per set, with signatures.

    sets: {in_domain: [test.en, test.de], it: [it.en, it.de], medical: [medical.en, medical.de]}
    noisy: {of: in_domain, word_blank: 0.1, seed: 1}     # analysis/DuA/robust_add_noisy.sh: wb 0.1, wd 0, k 0

Metrics are `<set>/bleu` and `<set>/chrf`; the noisy set's reference is its clean set's. `nmt_bleu.png` beside
results.json shows BLEU per set. The release scores the
in-domain test with `sacrebleu -t wmt19` on the detokenized hypotheses and the analysis sets against their files,
tokenizer 13a, as here (at paper scale the sets are the WMT19 test, analysis/OD/{it,medical}.{en,de} and
analysis/DuA/test.{en_XX,de_DE}).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from llmlab.data.noise import add_noise
from llmlab.errors import UserError
from llmlab.metrics.mt import bleu, chrf
from llmlab.models import nmt
from llmlab.tasks.base import BatchedTask
from llmlab.data.parallel import read_lines
from llmlab.models.nmt import require_seq2seq
from llmlab.tasks.nmt_probe import bar_plot


@dataclass
class NMT(BatchedTask):
    name: ClassVar[str] = "nmt"
    limit_means: ClassVar[str] = "the first N sentences of every test set"
    main_metric: ClassVar[str] = "in_domain/bleu"

    src: str = "en"
    tgt: str = "de"
    sets: dict | None = None                   # name -> [source file, reference file]
    noisy: dict | None = None                  # {of: <set>, word_blank, word_dropout, shuffle_k, seed, moses}
    beam: int = 5                              # fairseq-generate --beam default
    length_penalty: float = 1.0                # fairseq --lenpen default
    max_new_tokens: int = 200                  # fairseq --max-len-b default
    batch_size: int = 60                       # the release's --batch-size 60

    def check_model(self, spec: dict) -> None:
        require_seq2seq(f"task {self.name}", spec, instead=", or task=translation for a chat model")

    def check_data(self) -> None:
        if not self.sets:
            raise UserError("task nmt: no test sets. Give task.sets={name: [source file, reference file], ...}.")
        for name, files in self.sets.items():
            if not isinstance(files, (list, tuple)) or len(files) != 2:
                raise UserError(f"task nmt: set {name} must be [source file, reference file]; got {files!r}.")
            for f in files:
                if not f or not Path(str(f)).is_file():
                    raise UserError(f"task nmt: {f} (set {name}) does not exist; give existing files in task.sets.")
            if len(read_lines(files[0])) != len(read_lines(files[1])):
                raise UserError(f"task nmt: {files[0]} and {files[1]} (set {name}) differ in length; a test set "
                                f"needs one reference per source line.")
        if self.noisy is not None:
            known = {"of", "word_blank", "word_dropout", "shuffle_k", "seed", "moses"}
            bad = set(self.noisy) - known
            if bad or self.noisy.get("of") not in self.sets:
                raise UserError(f"task nmt: noisy={dict(self.noisy)} must name one of the sets in `of` "
                                f"({', '.join(self.sets)}) and only the keys {', '.join(sorted(known))}.")

    def items(self, lm, ctx) -> list[dict]:
        out = []
        for name, (src, ref) in self.sets.items():
            out += [{"set": name, "index": i, "source": s, "reference": r}
                    for i, (s, r) in enumerate(zip(read_lines(src), read_lines(ref)))]
        if self.noisy is not None:
            n = dict(self.noisy)
            clean = [it for it in out if it["set"] == n["of"]]
            noisy = add_noise([it["source"] for it in clean], lang=self.src,
                              word_blank_p=float(n.get("word_blank", 0.1)),
                              word_dropout_p=float(n.get("word_dropout", 0.0)),
                              shuffle_k=float(n.get("shuffle_k", 0)), seed=int(n.get("seed", 1)),
                              moses=bool(n.get("moses", True)))
            out += [{**it, "set": "noisy", "clean_source": it["source"], "source": s} for it, s in zip(clean, noisy)]
        return out

    def limited(self, items: list, limit: int | None) -> list:
        if not limit:
            return list(items)
        return [it for it in items if it["index"] < int(limit)]

    def run_batch(self, lm, method, batch, ctx) -> list[dict]:
        hyps = nmt.translate(lm, [it["source"] for it in batch], self.src, self.tgt, beam=self.beam,
                             max_new_tokens=self.max_new_tokens, batch_size=len(batch),
                             length_penalty=self.length_penalty)
        return [{**it, "prediction": h} for it, h in zip(batch, hyps)]

    def aggregate(self, predictions: list[dict], ctx) -> dict[str, float]:
        metrics, self._signatures = {}, {}
        for name in dict.fromkeys(p["set"] for p in predictions):
            rows = [p for p in predictions if p["set"] == name]
            hyps, refs = [p["prediction"] for p in rows], [p["reference"] for p in rows]
            metrics[f"{name}/bleu"], self._signatures["bleu_signature"] = bleu(hyps, refs, self.tgt)
            metrics[f"{name}/chrf"], self._signatures["chrf_signature"] = chrf(hyps, refs)
            self._signatures[f"{name}/sentences"] = len(rows)
        self._plot(ctx, metrics)
        return metrics

    def _plot(self, ctx, metrics: dict) -> None:
        """`nmt_bleu.png`: BLEU per test set (in domain, out of domain, noisy)."""
        names = [k.split("/")[0] for k in metrics if k.endswith("/bleu")]
        bar_plot(ctx, "nmt_bleu", names, [metrics[f"{n}/bleu"] for n in names], "test set", "BLEU",
                 f"BLEU per test set ({self.src}->{self.tgt}, beam {self.beam})", color="tab:green")

    def info(self, items, method, ctx) -> dict:
        return {**getattr(self, "_signatures", {}), "noisy": dict(self.noisy) if self.noisy else None,
                "beam": self.beam}
