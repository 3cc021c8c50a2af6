"""The fusion rows of PTvsRI: RI aligned to PT by optimal transport and averaged into it (`ot_fusion`), then
optionally trained further (`ot_fusion_ct`); and the vanilla average without alignment (`avg_fusion`).

The release (exps/fuse_model.sh, exps/continue_training_trimed_ende.sh): fused = 0.1 * aligned(RI) + 0.9 * PT,
the embeddings PT's; continued training from the fused weights with PT's fine-tuning recipe (lr 3e-5, polynomial
decay, 2500 warmup, label smoothing 0.2, dropout 0.3, attention dropout 0.1, Adam eps 1e-6), 40k updates,
optimizer and schedule reset. The alignment reads one batch of the validation set (exps/prepare.py: the first
batch of fairseq's valid iterator, max_tokens 16384, padding included; `act_num_samples=200` is never used).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from llmlab.errors import UserError
from llmlab.methods.fusion import ot
from llmlab.data.parallel import read_lines
from llmlab.methods.fusion.systems import NMTSystems, with_weights
from llmlab.models import nmt
from llmlab.progress import progress
from llmlab.training.cache import file_digest, train_once


@dataclass
class WeightAverage(NMTSystems):
    """Vanilla averaging: p0 * RI + (1 - p0) * PT, no alignment (the ablation row)."""

    name: ClassVar[str] = "avg_fusion"
    p0: float = 0.1                      # exps/fuse_model.sh ratio=0.1 (the RI share)

    def prepare(self, lm, ctx):
        s = self.systems(lm, ctx)
        self._points = {"init": s["init"].model.state_dict(), "other": s["ri"].model.state_dict()}
        return with_weights(lm, ot.average(s["ri"].model, s["pt"].model, self.p0))


@dataclass
class OTFusion(NMTSystems):
    """RI aligned to PT neuron by neuron (exact OT on activations) and averaged into it; then, with
    `continue_steps`, trained further on the parallel data with PT's recipe."""

    name: ClassVar[str] = "ot_fusion"
    p0: float = 0.1                      # exps/fuse_model.sh ratio=0.1 (the RI share)
    activation_tokens: int = 16384       # exps/prepare.py max_tokens: one batch of at most this many padded tokens
    input_first: bool = False            # not the release: input-side plans applied before output-side ones (ot.py)

    def check(self) -> None:
        super().check()
        for p in (self.valid_source, self.valid_target):
            if not p or not Path(str(p)).is_file():
                raise UserError(f"method={self.name} aligns neurons on activations of the validation set: give "
                                f"method.valid_source and method.valid_target (files, one sentence per line); got {p!r}.")

    def activation_batch(self, lm) -> tuple[dict, dict]:
        """The first validation pairs whose padded batch (sentences x the longest side) stays within
        `activation_tokens`, as one teacher-forcing batch."""
        src, tgt = read_lines(self.valid_source), read_lines(self.valid_target)
        rows, longest = [], 0
        for s, t in zip(src, tgt):
            row = nmt.example(lm, s, t, self.src, self.tgt, 1024)
            width = max(longest, len(row["input_ids"]), len(row["labels"]))
            if rows and width * (len(rows) + 1) > self.activation_tokens:
                break
            rows.append(row)
            longest = width
        batch = nmt.collate(rows, lm.tokenizer.pad_token_id)
        batch.pop("labels")
        facts = {"sentences": len(rows), "padded_source_tokens": int(batch["input_ids"].numel()),
                 "padded_target_tokens": int(batch["decoder_input_ids"].numel()),
                 "padding_share": round(1 - float(batch["attention_mask"].float().mean()), 4)}
        return {k: v.to(lm.device) for k, v in batch.items()}, facts

    def prepare(self, lm, ctx):
        s = self.systems(lm, ctx)
        inputs = {"ri": self._facts["ri"]["checkpoint"], "pt": self._facts["pt"]["checkpoint"], "p0": self.p0,
                  "input_first": self.input_first, "activation_tokens": self.activation_tokens,
                  "valid": file_digest([self.valid_source, self.valid_target])}
        history, reused, _ = train_once(ctx, lm, "ptvsri-fusion", inputs, lambda: [self._fuse(lm, s)])
        self._facts["fusion"] = {**history[0], "reused": reused}   # the alignment's facts, as measured when it ran
        lm = self.continue_training(lm, ctx, lm.model.state_dict())
        self._points = {"init": s["init"].model.state_dict(), "other": s["ri"].model.state_dict()}
        return lm

    def _fuse(self, lm, s) -> dict:
        """Align RI to PT, load the fused weights into `lm`; returns the alignment's facts (cached with the weights,
        so that every task of a fusion row reuses one alignment)."""
        batch, sample = self.activation_batch(lm)
        print(f"[llmlab] {self.name}: aligning RI to PT on {sample['sentences']} validation sentences "
              f"({sample['padded_source_tokens']} + {sample['padded_target_tokens']} padded tokens)", flush=True)
        modules = sum(1 for m in s["ri"].model.modules() if any(True for _ in m.parameters(recurse=False)))
        ticks = iter(progress(range(modules), desc=f"{self.name} (modules aligned)", unit="module"))
        start = time.perf_counter()
        fused, _, facts = ot.fuse_release(s["ri"].model, s["pt"].model, batch, self.p0,
                                          progress=lambda name: next(ticks, None), input_first=self.input_first)
        seconds = time.perf_counter() - start
        with_weights(lm, fused)
        per_module = facts["seconds_per_module"]
        identity = {n: sum(i == j for i, j in enumerate(p["output"])) / len(p["output"])
                    for n, p in facts["plans"].items() if "output" in p}
        return {"p0": self.p0, "input_first": self.input_first, "activation_sample": sample,
                "seconds": round(seconds, 2),
                "seconds_per_module_mean": round(sum(per_module.values()) / max(1, len(per_module)), 4),
                "modules_aligned": len(per_module), "recomputes": facts["recomputes"],
                "output_plan_identity_share_mean": round(sum(identity.values()) / max(1, len(identity)), 4)}

    def summary(self) -> str | None:
        f = self._facts.get("fusion")
        if not f:
            return None
        return (f"OT fusion of RI into PT (p0={f['p0']}): {f['modules_aligned']} modules in {f['seconds']} s, "
                f"{f['recomputes']} activation recomputes, on {f['activation_sample']['sentences']} sentences"
                + (" (the cached alignment, reused)" if f.get("reused") else ""))
