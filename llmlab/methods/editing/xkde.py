"""X-KDE: cross-lingual knowledge editing by a trained in-context editor (Wu et al., Findings ACL 2025,
"Edit Once, Update Everywhere"; official code YukinoshitaKaren/X_KDE).

The edit is put into the prompt (X_KDE eval/eval.py knowledge_edit_template), inside the chat
template, for training and evaluation alike:

    Please acknowledge the updated information provided below and respond to the subsequent query in {English|Chinese}.

    [Updated Information]:
    {source-language question} {source-language new answer}

    [Query]:
    {target-language question}

`prepare` trains the model to use it, in two stages (each cached by signature, see llmlab.training):

1. XE-IT (sft/sft.py, scripts/full_train_qwen25.sh): SFT on cross-lingual edit instructions
   (llmlab.data.xkde), loss on the assistant turn only; lr 1e-5, 5 epochs, cosine, warmup 0.05,
   weight decay 1e-4, Adam betas (0.9, 0.95), batch 1 per device.
2. TL-PO (ORPO/src/sampling_vllm.py, batched.py, exact.py, Alignment/run_orpo.py): sample 5
   answers per prompt at temperature 0.8, score each against the gold target-language answer
   (official: NLLB-200-distilled-600M, reward 1 / cross-entropy of the gold answer given the
   sample; here `scorer: token_f1` by default offline, `nllb` when its weights are available),
   pairs = every higher-scored sample over every lower-scored one + gold over the best sample;
   ORPO with beta 0.1, lr 1e-6 (training_configs/example.json), cosine, 100 warmup steps,
   weight decay 0.05, batch 2 x 16 accumulation (run_orpo.py ScriptArguments).

`tlpo: false` stops after stage 1 (the `xkde_it` config: the paper's XE-IT-only ablation).

Test language: the instruction names the language to answer in: `query_lang` when set, else the
language the task says the query is in (`prompt_for(..., lang=)`: Bi-ZsRE/MzsRE pass each test
language), else one detected from the query's script (CJK -> Chinese, Cyrillic -> Russian,
Thai -> Thai, otherwise English).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from tqdm.auto import tqdm

from llmlab.data import xkde as data
from llmlab.errors import UserError
from llmlab.methods.editing.base import EditRequest, InContextEditor
from llmlab.training import TrainSettings, orpo, plot_losses, sft, signature, train_once
from llmlab.training.cache import base_identity
from llmlab.training.trainers import history_summary, uses_chat

log = logging.getLogger(__name__)

SCORERS = ("token_f1", "nllb")
NLLB_CODES = {"en": "eng_Latn", "zh": "zho_Hans", "de": "deu_Latn", "fr": "fra_Latn", "es": "spa_Latn",
              "pt": "por_Latn", "ru": "rus_Cyrl", "th": "tha_Thai", "tr": "tur_Latn", "vi": "vie_Latn",
              "cz": "ces_Latn", "du": "nld_Latn"}


def detect_lang(text: str) -> str:
    """The language of a query from its script: zh (CJK), ru (Cyrillic), th (Thai), else en."""
    counts = {"zh": 0, "ru": 0, "th": 0}
    for ch in text:
        code = ord(ch)
        if 0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF:
            counts["zh"] += 1
        elif 0x0400 <= code <= 0x04FF:
            counts["ru"] += 1
        elif 0x0E00 <= code <= 0x0E7F:
            counts["th"] += 1
    lang, n = max(counts.items(), key=lambda kv: kv[1])
    return lang if n else "en"


@dataclass
class XKDE(InContextEditor):
    name: ClassVar[str] = "xkde"

    # -- data (llmlab.data.xkde) -------------------------------------------------------------------
    data_dir: str | None = None  # directory of the parallel files (ReMaKE data/zsre_mend_train_{lang}_10000.txt)
    file_pattern: str = data.FILE_PATTERN
    langs: list[str] = field(default_factory=lambda: ["en", "zh"])
    directions: Any = None  # null: every (source, target) pair of langs, monolingual ones included
    train_rows: int | None = None  # lines of the parallel files used (null: all)
    out_of_scope_ratio: float = 0.5
    xeit_file: str | None = None  # or an XE-IT JSON in the official format (overrides data_dir)
    chat: bool = True  # train and prompt inside the chat template (X-KDE: yes)
    # -- stage 1: XE-IT -----------------------------------------------------------------------------
    sft: dict = field(default_factory=lambda: dict(learning_rate=1e-5, epochs=5, warmup_ratio=0.05, weight_decay=1e-4,
                                                   lr_scheduler="cosine", adam_beta2=0.95, batch_size=1))
    # -- stage 2: TL-PO -----------------------------------------------------------------------------
    tlpo: bool = True
    tlpo_prompts: int | None = None  # in-scope XE-IT prompts sampled for TL-PO (null: all)
    samples: int = 5
    temperature: float = 0.8
    max_new_tokens: int = 64
    scorer: str = "token_f1"  # token_f1 | nllb
    nllb_model: str = "facebook/nllb-200-distilled-600M"
    orpo: dict = field(default_factory=lambda: dict(learning_rate=1e-6, beta=0.1, lr_scheduler="cosine",
                                                    warmup_steps=100, weight_decay=0.05, batch_size=2, grad_accum=16))
    use_cache: bool = True  # reuse a trained checkpoint with the same signature
    query_lang: str | None = None  # forces the answer language; null: the task's test language, else detected

    def __post_init__(self):
        if self.scorer not in SCORERS:
            raise UserError(f"xkde: method.scorer must be one of {', '.join(SCORERS)}; got {self.scorer!r}.")
        self._active: list[EditRequest] = []
        self._facts: dict[str, Any] = {}
        self._nllb = None

    def stage_settings(self, stage: str) -> TrainSettings:
        return TrainSettings.from_dict(getattr(self, stage), f"{self.name}: method.{stage}")

    def direction_pairs(self) -> list[tuple[str, str]]:
        if self.directions:
            pairs = [tuple(d.split("_")) if isinstance(d, str) else tuple(d) for d in self.directions]
            if any(len(p) != 2 for p in pairs):
                raise UserError(f"{self.name}: method.directions items are 'en_zh' or [en, zh]; got {self.directions}.")
            return pairs
        return [(s, t) for s in self.langs for t in self.langs]

    # -- data -----------------------------------------------------------------------------------------
    def xeit_data(self, seed: int) -> list[dict]:
        if self.xeit_file:
            examples = data.read_xeit_json(self.xeit_file)
            return examples[: self.train_rows] if self.train_rows else examples
        if not self.data_dir:
            raise UserError(f"{self.name}: no training data. Set method.data_dir=/path/to/dir holding "
                            f"{self.file_pattern.format(lang='<lang>')} for {', '.join(self.langs)} (ReMaKE data/, "
                            f"line-aligned `question<TAB>answer`), or method.xeit_file=<X-KDE training JSON>.")
        rows = data.read_parallel(data.parallel_files(self.data_dir, self.langs, self.file_pattern),
                                  limit=self.train_rows)
        return data.xeit_examples(rows, self.direction_pairs(), self.out_of_scope_ratio, seed)

    # -- training -------------------------------------------------------------------------------------
    def prepare(self, lm, ctx):
        examples = self.xeit_data(ctx.seed)
        histories: dict[str, list[dict]] = {}
        sft_settings = self.stage_settings("sft")
        stage1 = {"base": base_identity(lm), "data": signature([(e["prompt"], e["answer"]) for e in examples], 32),
                  "settings": sft_settings.as_dict(), "chat": self.chat, "seed": ctx.seed}
        histories["XE-IT (SFT)"], self._facts["xeit_cached"], ckpt1 = train_once(
            ctx, lm, "xkde-xeit", stage1, lambda: sft(lm, examples, sft_settings, self.chat, ctx.seed,
                                                      run_name=f"{self.name}-xeit", ctx=ctx), self.use_cache)
        self._facts.update(xeit_examples=len(examples), xeit_checkpoint=str(ckpt1.path))
        if self.tlpo:
            orpo_settings = self.stage_settings("orpo")
            prompts = [e for e in examples if e.get("scope", "in") == "in"]
            prompts = prompts[: self.tlpo_prompts] if self.tlpo_prompts else prompts
            stage2 = {"stage1": ckpt1.sig, "settings": orpo_settings.as_dict(), "prompts": len(prompts),
                      "samples": self.samples, "temperature": self.temperature, "max_new_tokens": self.max_new_tokens,
                      "scorer": self.scorer, "nllb": self.nllb_model if self.scorer == "nllb" else None, "seed": ctx.seed}

            def train_tlpo():
                with ctx.timer("xkde_tlpo_sampling"):
                    pairs = self.preference_data(lm, prompts, ctx.seed)
                self._facts["tlpo_pairs"] = len(pairs)
                return orpo(lm, pairs, orpo_settings, self.chat, ctx.seed, run_name=f"{self.name}-tlpo", ctx=ctx)

            histories["TL-PO (ORPO)"], self._facts["tlpo_cached"], ckpt2 = train_once(
                ctx, lm, "xkde-tlpo", stage2, train_tlpo, self.use_cache)
            self._facts.update(tlpo_prompts=len(prompts), tlpo_checkpoint=str(ckpt2.path))
        png = plot_losses(histories, ctx.path(f"{self.name}_loss.png"), title=f"{self.name} on {lm.name}")
        if png:
            ctx.add_artifact(png)
        self._facts.update({f"{k}_summary": history_summary(h) for k, h in histories.items()})
        return lm

    # -- TL-PO data -----------------------------------------------------------------------------------
    @torch.no_grad()
    def sample_answers(self, lm, prompt: str, seed: int) -> list[str]:
        ids = lm.encode(prompt, chat=uses_chat(lm, self.chat))
        torch.manual_seed(seed)
        pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else lm.tokenizer.eos_token_id
        out = lm.model.generate(torch.tensor([ids], device=lm.device), do_sample=True, temperature=self.temperature,
                                top_p=1.0, top_k=0, num_return_sequences=self.samples,
                                max_new_tokens=self.max_new_tokens, pad_token_id=pad)
        return [lm.decode(row[len(ids):]).strip() for row in out]

    def score(self, samples: list[str], gold: str, lang: str) -> list[float]:
        if self.scorer == "token_f1":
            from llmlab.metrics.editing import token_f1_ml

            return [token_f1_ml(s, gold) for s in samples]
        return self.nllb_scores(samples, gold, lang)

    def nllb_scores(self, samples: list[str], gold: str, lang: str) -> list[float]:
        """Official reward (ORPO/src/batched.py): 1 / mean cross-entropy of the gold answer as the
        NLLB "translation" of the sample (both in the target language here)."""
        if self._nllb is None:
            try:
                from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

                tok = AutoTokenizer.from_pretrained(self.nllb_model)
                model = AutoModelForSeq2SeqLM.from_pretrained(self.nllb_model).eval()
            except Exception as err:
                raise UserError(f"xkde: scorer=nllb needs the NLLB-200 weights ({self.nllb_model!r}), which could not "
                                f"be loaded ({type(err).__name__}). Download them (HF_HUB_OFFLINE=0, or a local copy "
                                f"and method.nllb_model=/path/to/nllb-200-distilled-600M), or use "
                                f"method.scorer=token_f1.") from err
            self._nllb = (model.to(torch.device("cuda" if torch.cuda.is_available() else "cpu")), tok)
        model, tok = self._nllb
        code = NLLB_CODES.get(lang, "eng_Latn")
        tok.src_lang, tok.tgt_lang = code, code
        scores = []
        with torch.no_grad():
            for text in samples:
                batch = tok(text or " ", text_target=gold, return_tensors="pt", truncation=True, max_length=512)
                loss = model(**batch.to(model.device)).loss.item()
                scores.append(1.0 / max(loss, 1e-6))
        return scores

    def preference_data(self, lm, prompts: list[dict], seed: int) -> list[dict]:
        pairs = []
        for n, example in enumerate(tqdm(prompts, desc=f"{self.name} TL-PO sampling", leave=False)):
            samples = self.sample_answers(lm, example["prompt"], seed + n)
            lang = example.get("target") or detect_lang(example["answer"])
            pairs += data.preference_pairs(example["prompt"], example["answer"], samples,
                                           self.score(samples, example["answer"], lang))
        return pairs

    # -- editing --------------------------------------------------------------------------------------
    def prompt_for(self, lm, query: str, requests: list[EditRequest] | None = None, lang: str | None = None) -> str:
        requests = self.active(requests)
        if not requests:
            return query
        lang = self.query_lang or lang or detect_lang(query)
        update = "\n".join(f"{r.prompt} {r.target_new}" for r in requests)  # one line per edit (official: one edit)
        return data.update_prompt(update, query, lang)

    def report(self) -> dict:
        return {"stages": ["XE-IT", "TL-PO"] if self.tlpo else ["XE-IT"], "scorer": self.scorer if self.tlpo else None,
                **self._facts}

