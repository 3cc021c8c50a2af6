"""PTvsRI's lexical probability distribution probe (analysis/lpd.py): the entropy (bits) of the model's output
distribution at every target position of the test set under teacher forcing, counted in buckets of 2 bits
(`Bucket_Sort(entropies, 2)`), one histogram per model. A model with more low-entropy positions makes more
confident lexical choices (the paper: RI more than PT).

Positions: every target token and the end-of-sentence token (the release's loop stops one short of the padded
length, which for mBART's targets `tokens </s> [de_DE]` leaves out the language tag). Writes
`lexical_entropy.png` (the histogram) and `lexical_entropy.json` (the bucket counts) beside results.json.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from llmlab.metrics.registry import register
from llmlab.models import nmt
from llmlab.data.parallel import read_lines
from llmlab.tasks.nmt_probe import Probe, bar_plot

register("entropy_mean", "mean entropy (bits) of the output distribution over the target positions of the test set "
         "(teacher forcing; PTvsRI analysis/lpd.py)", higher_is_better=None, unit="bits")
register("confident_share", "share of target positions whose output entropy is below 2 bits (the first bucket of "
         "PTvsRI's lexical probability distribution)", higher_is_better=None, unit="%")


@dataclass
class LexicalEntropy(Probe):
    name: ClassVar[str] = "lexical_entropy"
    unit: ClassVar[str] = "batch"
    limit_means: ClassVar[str] = "the first N sentences of the test set"
    main_metric: ClassVar[str] = "entropy_mean"

    bucket_bits: float = 2.0           # Bucket_Sort(entropies, 2)
    batch_size: int = 64

    def items(self, lm, ctx):
        return list(zip(read_lines(self.source), read_lines(self.reference)))

    @torch.no_grad()
    def evaluate(self, lm, method, ctx):
        from llmlab.progress import progress
        from llmlab.tasks.base import Scores

        pairs = self.limited(self.items(lm, ctx), ctx.limit)
        entropies: list[float] = []
        predictions: list[dict] = []
        lm.model.eval()
        starts = range(0, len(pairs), self.batch_size)
        for start in progress(starts, desc=self.name, unit="batch"):
            chunk = pairs[start:start + self.batch_size]
            for batch in nmt.batches(lm, [s for s, _ in chunk], [r for _, r in chunk], self.src, self.tgt, 1024,
                                     len(chunk)):
                logp = torch.log_softmax(lm.model(**{k: v for k, v in batch.items() if k != "labels"}).logits.float(), -1)
                ent = -(logp.exp() * logp).sum(-1) / math.log(2)
                labels = batch["labels"]
                keep = labels.ne(-100)
                keep &= labels.ne(nmt.lang_id(lm, self.tgt))   # the language tag closes the target: not a word
                entropies += ent[keep].tolist()
                for (source, reference), e, k in zip(chunk, ent, keep):
                    predictions.append({"source": source, "reference": reference,
                                        "entropy_per_position": [round(x, 3) for x in e[k].tolist()]})
        counts: dict[int, int] = {}
        for h in entropies:
            counts[int(h // self.bucket_bits)] = counts.get(int(h // self.bucket_bits), 0) + 1
        buckets = [counts.get(i, 0) for i in range(max(counts) + 1)] if counts else []
        metrics = {"entropy_mean": sum(entropies) / max(1, len(entropies)),
                   "confident_share": 100.0 * sum(h < 2.0 for h in entropies) / max(1, len(entropies))}
        ctx.path("lexical_entropy.json").write_text(json.dumps(
            {"bucket_bits": self.bucket_bits, "counts": buckets, "positions": len(entropies)}, indent=1))
        self._plot(ctx, buckets, lm.name, method)
        info = {"limit_means": self.limit_means, "items": len(pairs), "positions": len(entropies),
                "bucket_bits": self.bucket_bits, "bucket_counts": buckets}
        return Scores(metrics=metrics, predictions=predictions, main_metric=self.main_metric, info=info)

    def _plot(self, ctx, buckets: list[int], model: str, method) -> None:
        bar_plot(ctx, "lexical_entropy", [f"{i * self.bucket_bits:g}-{(i + 1) * self.bucket_bits:g}"
                                          for i in range(len(buckets))], buckets,
                 "entropy of the output distribution (bits)", "target positions",
                 f"lexical probability distribution: {getattr(method, 'name', 'none')} ({model})")
