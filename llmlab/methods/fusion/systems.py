"""The two translation systems PTvsRI compares, trained once on the same parallel data and cached:

- RI: the model's architecture from random weights (seeded by `ri_seed`), trained on the parallel data
  (exps/base_model/en_de_RI_trimed_dict.sh: lr 7e-4, inverse_sqrt, 6000 warmup updates, label smoothing 0.1,
  dropout 0.2 as called, Adam (0.9, 0.98), 60k updates);
- PT: the pre-trained init fine-tuned on the same data (en_de_PT_trimed_dict.sh: lr 3e-5, polynomial decay,
  2500 warmup, label smoothing 0.2, dropout 0.3, attention dropout 0.1, Adam eps 1e-6, 100k updates). The
  pre-trained init is the model as loaded (mBART-cc25 at paper scale) or, with `pt_pretrain.max_steps > 0`, the
  loaded model after mBART's denoising pre-training on the monolingual files (cpu scale: the loaded model is a
  random init, and this short pre-training is what makes it "pre-trained").

Every system is trained by transformers' Seq2SeqTrainer (llmlab.training.seq2seq) and cached by the signature of
its starting weights, data and settings (`train_once`), so RI, PT and every fusion row share one training of each.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from llmlab.capabilities import TrainingEndpoints, WeightTransform
from llmlab.data.parallel import read_lines
from llmlab.errors import UserError
from llmlab.methods.base import Method
from llmlab.models.lm import LM
from llmlab.models.nmt import require_seq2seq
from llmlab.training.cache import base_identity, file_digest, signature, train_once
from llmlab.training.seq2seq import Seq2SeqSettings, denoising_rows, train_seq2seq


@dataclass
class NMTSystems(Method, WeightTransform, TrainingEndpoints):
    """Trains (or loads from the cache) the pre-trained init, RI and PT; subclasses pick or fuse them."""

    name: ClassVar[str] = "nmt_systems"
    family: ClassVar[str] = "fusion"

    src: str = "en"
    tgt: str = "de"
    train_source: str | None = None      # the parallel training data, one sentence per line
    train_target: str | None = None
    valid_source: str | None = None      # the validation set (ot_fusion reads its activation batch there)
    valid_target: str | None = None
    max_train_pairs: int | None = None   # the first N pairs (null: all)
    mono: dict = field(default_factory=dict)   # {lang: file}: monolingual text for the denoising pre-training
    max_mono: int | None = None          # the first N lines of each monolingual file
    ri: dict = field(default_factory=dict)           # Seq2SeqSettings of RI's training
    pt_pretrain: dict = field(default_factory=lambda: {"max_steps": 0})   # denoising; 0 steps: the model as loaded
    pt_finetune: dict = field(default_factory=dict)  # Seq2SeqSettings of PT's fine-tuning
    continue_steps: int = 0              # > 0: continued training from the returned weights, PT's recipe, this many updates
    ri_seed: int = 1                     # RI's random init (fairseq-train --seed 222 in the release)
    train_seed: int = 222                # data order and dropout (the release's --seed 222)

    def __post_init__(self):
        for key in ("ri", "pt_pretrain", "pt_finetune"):
            Seq2SeqSettings.from_dict(getattr(self, key), f"method.{key}")
        self._facts: dict[str, Any] = {}
        self._points: dict[str, dict] = {}

    # -- before loading -------------------------------------------------------------------------------
    def check(self) -> None:
        if not self.train_source or not self.train_target:
            raise UserError(f"method={self.name} trains translation models: give the parallel training data, "
                            f"method.train_source=<{self.src} file> method.train_target=<{self.tgt} file> (one "
                            f"sentence per line; scale=cpu uses the project's synthetic pair, ${{fixture:synthetic_mt}}).")
        files = [self.train_source, self.train_target]
        if int(self.pt_pretrain.get("max_steps", 0)) > 0:
            if not self.mono:
                raise UserError(f"method={self.name}: pt_pretrain.max_steps > 0 asks for a denoising pre-training, "
                                f"which reads monolingual text: give method.mono={{{self.src}: <file>, {self.tgt}: "
                                f"<file>}} or set method.pt_pretrain.max_steps=0 (the loaded model is the PT init).")
            files += list(self.mono.values())
        missing = [str(f) for f in files if not Path(str(f)).is_file()]
        if missing:
            raise UserError(f"method={self.name}: {', '.join(missing)} does not exist; the training files are one "
                            f"sentence per line (method.train_source, method.train_target, method.mono). The "
                            f"experiment ptvsri_wmt at scale=paper reads them from wmt19_dir=<dir with train.en, "
                            f"train.de, valid.en, valid.de>; scale=cpu uses the project's synthetic pair.")
        n_src, n_tgt = (len(read_lines(p)) for p in (self.train_source, self.train_target))
        if n_src != n_tgt:
            raise UserError(f"method={self.name}: {self.train_source} has {n_src} lines and {self.train_target} "
                            f"{n_tgt}; parallel data needs one target line per source line.")

    def check_model(self, spec: dict) -> None:
        require_seq2seq(f"method={self.name}", spec)

    # -- the systems ----------------------------------------------------------------------------------
    def parallel_rows(self) -> list[dict]:
        src = read_lines(self.train_source, self.max_train_pairs)
        tgt = read_lines(self.train_target, self.max_train_pairs)
        return [{"source": s, "target": t, "src": self.src, "tgt": self.tgt} for s, t in zip(src, tgt)]

    def _data_id(self) -> dict:
        return {"parallel": file_digest([self.train_source, self.train_target]), "pairs": self.max_train_pairs,
                "direction": f"{self.src}-{self.tgt}"}

    def _train(self, ctx, lm, stage: str, inputs: dict, rows_fn, settings: dict):
        s = Seq2SeqSettings.from_dict(settings, f"method.{stage}")
        history, reused, ckpt = train_once(
            ctx, lm, f"ptvsri-{stage}", {**inputs, "settings": s.as_dict(), "seed": self.train_seed},
            lambda: train_seq2seq(lm, rows_fn(), s, ctx, stage=stage, seed=self.train_seed))
        losses = [h["loss"] for h in history if "loss" in h]
        self._facts[stage] = {"steps": s.max_steps, "reused": reused, "checkpoint": str(ckpt.path),
                              "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
                              "seconds": ctx.timings.get(f"ptvsri-{stage}_train")}
        return lm

    def systems(self, lm, ctx) -> dict[str, Any]:
        """{"init": the PT init, "ri": RI, "pt": PT}, each a copy of `lm` with its weights."""
        if getattr(self, "_systems", None) is not None:
            return self._systems
        base = base_identity(lm)
        init = copy.deepcopy(lm)
        if int(self.pt_pretrain.get("max_steps", 0)) > 0:
            mono = {lang: read_lines(path, self.max_mono) for lang, path in self.mono.items()}

            def rows():
                out = []
                for i, (lang, texts) in enumerate(sorted(mono.items())):
                    out += denoising_rows(texts, lang, seed=self.train_seed + i, mask_token=lm.tokenizer.mask_token)
                return out

            self._train(ctx, init, "pretrain", {"base": base, "mono": file_digest(self.mono.values()),
                                                "max_mono": self.max_mono}, rows, self.pt_pretrain)
        torch.manual_seed(self.ri_seed)   # the architecture, random weights (no copy of the loaded ones)
        ri = LM(model=type(lm.model)(lm.model.config).to(lm.device).eval(), tokenizer=lm.tokenizer, name=lm.name,
                spec=lm.spec)
        self._train(ctx, ri, "ri", {"base": base, "ri_seed": self.ri_seed, **self._data_id()},
                    self.parallel_rows, self.ri)
        pt = copy.deepcopy(init)
        self._train(ctx, pt, "pt", {"base": base, "pretrain": self._facts.get("pretrain", {}).get("checkpoint"),
                                    **self._data_id()}, self.parallel_rows, self.pt_finetune)
        self._systems = {"init": init, "ri": ri, "pt": pt}
        return self._systems

    def continue_training(self, lm, ctx, start: dict):
        """`continue_steps` more updates of PT's fine-tuning recipe from `start` (the weights `lm` holds), optimizer
        and schedule fresh (exps/continue_training_trimed_ende.sh: --reset-optimizer --reset-lr-scheduler); cached by
        the signature of the starting weights."""
        if self.continue_steps <= 0:
            return lm
        inputs = {"base": base_identity(lm), "start": signature({k: float(v.double().sum()) for k, v in start.items()}),
                  **self._data_id()}
        return self._train(ctx, lm, "continue", inputs, self.parallel_rows,
                           {**self.pt_finetune, "max_steps": self.continue_steps})

    def landscape_points(self) -> dict:
        return self._points


def with_weights(lm, state: dict):
    """`lm` with `state` loaded into its model (in place)."""
    lm.model.load_state_dict(state)
    lm.model.eval()
    return lm


@dataclass
class RandomInit(NMTSystems):
    """RI: the architecture from random weights, trained on the parallel data."""

    name: ClassVar[str] = "ri"

    def prepare(self, lm, ctx):
        s = self.systems(lm, ctx)
        self._points = {"init": s["init"].model.state_dict(), "other": s["pt"].model.state_dict()}
        return with_weights(lm, s["ri"].model.state_dict())


@dataclass
class PreTrained(NMTSystems):
    """PT: the pre-trained init fine-tuned on the parallel data (with `continue_steps`, then trained as long again
    as the fusion's continued training: the control that separates fusion from extra updates; not a paper row)."""

    name: ClassVar[str] = "pt"

    def prepare(self, lm, ctx):
        s = self.systems(lm, ctx)
        self._points = {"init": s["init"].model.state_dict(), "other": s["ri"].model.state_dict()}
        return self.continue_training(with_weights(lm, s["pt"].model.state_dict()), ctx, s["pt"].model.state_dict())
