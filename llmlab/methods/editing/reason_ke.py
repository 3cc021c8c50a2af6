"""Reason-KE: a trained in-context editor that reasons explicitly over the given facts
(Wu et al., Findings EMNLP 2025, "Robust Knowledge Editing via Explicit Reasoning Chains for
Distractor-Resilient Multi-Hop QA"; official code YukinoshitaKaren/Reason-KE).

The answer is a four-stage chain: (1) acknowledge the updated information, (2) decide the
relevance of each fact, (3) apply the relevant updates and ignore the distractors, (4) reason to
the final answer, ending "[Answer]: ...". `prepare` trains it (SFT, train/sft.sh: lr 1e-5,
5 epochs, cosine, warmup 0.05, weight decay 1e-4, Adam betas (0.9, 0.95), batch 1/device) on
MQuAKE-CF cases with retrieved facts (llmlab.data.reason_ke), cached by signature.
`train: false` keeps the base model with the same prompt and parsing (the paper's baseline row).

Inference (eval/eval_rasoning.py): for every rewrite of the case, retrieve 1 + `distractors`
facts from the pool of all edited facts (the task's rewrites, offered via
`prepare_demonstrations`; retrieval key: the fact's true statement, query: the new statement
+ ". "), join them with ". ", ask each question inside the chat template, greedy decoding up
to 200 new tokens; the answer is read as the official `extract_answer` does (Answer.text, scored by
exact match with the aliases, the paper's metric) and leniently (Answer.lenient). `leak_answer: true` adds the statement
"{question} {new_answer}" to the facts (our reading of the paper's leaked-answer setting; it
needs the case's `new_answer` in the requests' `extra`).

Capability `OwnAnswering` (llmlab.capabilities): `answers(lm, questions, requests)` returns each
parsed answer with its chain; the mquake task asks it instead of using its few-shot prompt.
`prompt_for` gives the same prompt for other probes (the edit-wise cloze).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from llmlab.capabilities import Answer, OwnAnswering
from llmlab.data import reason_ke as data
from llmlab.errors import UserError
from llmlab.generation import greedy_generate_padded
from llmlab.methods.editing.base import EditRequest, InContextEditor
from llmlab.models.sentence import SentenceEncoder
from llmlab.training import TrainSettings, plot_losses, sft, signature, train_once
from llmlab.training.cache import base_identity
from llmlab.training.trainers import history_summary, uses_chat


@dataclass
class ReasonKE(InContextEditor, OwnAnswering):
    name: ClassVar[str] = "reason_ke"

    train: bool = True  # false: the base model with Reason-KE's prompt and parsing (paper baseline)
    train_path: str | None = None  # MQuAKE-CF.json (original format)
    chains_path: str | None = None  # or externally written chains (official generated format)
    train_cases: int | None = None  # cases used (null: all)
    encoder: dict = field(default_factory=dict)  # a model config (defaults: /model@encoder: minilm-l6; official: contriever-msmarco)
    chat: bool = True
    sft: dict = field(default_factory=lambda: dict(learning_rate=1e-5, epochs=5, warmup_ratio=0.05, weight_decay=1e-4,
                                                   lr_scheduler="cosine", adam_beta2=0.95, batch_size=1))
    distractors: int = 0  # extra facts retrieved per relevant fact at inference (k = 1 + distractors)
    leak_answer: bool = False
    max_new_tokens: int = 200  # eval_rasoning.py get_rsult
    use_cache: bool = True

    def __post_init__(self):
        if self.distractors < 0:
            raise UserError(f"reason_ke: method.distractors must be >= 0; got {self.distractors}.")
        self._encoder = None
        self._pool: data.FactPool | None = None
        self._active: list[EditRequest] = []
        self._facts: dict = {}

    def sentence_encoder(self) -> SentenceEncoder:
        if self._encoder is None:
            self._encoder = SentenceEncoder.from_spec(self.encoder, self.name)
        return self._encoder

    # -- training ---------------------------------------------------------------------------------
    def training_data(self, seed: int) -> list[dict]:
        n = self.train_cases
        if self.chains_path:
            examples = data.read_chains(self.chains_path)
            return examples[:n] if n else examples
        if not self.train_path:
            raise UserError("reason_ke: no training data. Set method.train_path=/path/to/MQuAKE-CF.json (princeton-nlp/"
                            "MQuAKE) or method.chains_path=<chains JSON>, or method.train=false for the untrained "
                            "baseline.")
        cases = data.load_cases(self.train_path)
        pool = data.pool_of_cases(cases, self.sentence_encoder())  # distractors come from the whole file
        return data.training_examples(cases[:n] if n else cases, pool, seed)

    def prepare(self, lm, ctx):
        if not self.train:
            return lm
        examples = self.training_data(ctx.seed)
        settings = TrainSettings.from_dict(self.sft, "reason_ke: method.sft")
        inputs = {"base": base_identity(lm), "data": signature([(e["prompt"], e["answer"]) for e in examples], 32),
                  "settings": settings.as_dict(), "chat": self.chat, "seed": ctx.seed}
        history, cached, ckpt = train_once(ctx, lm, "reason-ke", inputs, lambda: sft(
            lm, examples, settings, self.chat, ctx.seed, run_name="reason_ke-sft", ctx=ctx), self.use_cache)
        png = plot_losses({"Reason-KE SFT": history}, ctx.path("reason_ke_loss.png"), title=f"reason_ke on {lm.name}")
        if png:
            ctx.add_artifact(png)
        self._facts = {"train_examples": len(examples), "cached": cached, "checkpoint": str(ckpt.path),
                       "summary": history_summary(history)}
        return lm

    # -- facts --------------------------------------------------------------------------------------
    def prepare_demonstrations(self, lm, pool: list[EditRequest]) -> None:
        pairs = [(data.true_statement(r), data.new_statement(r)) for r in pool if r.target_true is not None]
        self._pool = data.FactPool(pairs, self.sentence_encoder()) if pairs else None

    def facts_for(self, requests: list[EditRequest], question: str | None = None) -> list[str]:
        own = [data.new_statement(r) for r in requests]
        if self._pool is None:  # no pool offered: the requests themselves (plus other requests as distractors)
            pairs = [(data.true_statement(r) if r.target_true else data.new_statement(r), data.new_statement(r))
                     for r in requests]
            self._pool = data.FactPool(pairs, self.sentence_encoder())
        facts = data.retrieved_facts(self._pool, own, 1 + self.distractors)
        if self.leak_answer:
            answers = {(r.extra or {}).get("new_answer") for r in requests} - {None}
            if not answers:
                raise UserError("reason_ke: leak_answer=true needs the case's new_answer in the edit requests "
                                "(EditRequest.extra['new_answer'], set by the mquake task).")
            facts.append(f"{question} {sorted(answers)[0]}" if question else sorted(answers)[0])
        return facts

    # -- editing ------------------------------------------------------------------------------------
    def prompt_for(self, lm, query: str, requests: list[EditRequest] | None = None, lang: str | None = None) -> str:
        requests = self.active(requests)
        if not requests:
            return query
        return data.reason_prompt(". ".join(self.facts_for(requests, query)), query)

    def answers(self, lm, questions: list[str], requests: list[EditRequest] | None = None) -> list[Answer]:
        """The parsed "[Answer]:" of the chain generated for each question under the edits, with the
        chain: greedy, up to `max_new_tokens` or EOS (eval_rasoning.py), decoded as one batch."""
        chat = uses_chat(lm, self.chat)
        rows = [lm.encode(self.prompt_for(lm, q, requests), chat=chat)[-lm.max_length:] for q in questions]
        outputs = [lm.decode(ids) for ids in greedy_generate_padded(lm, rows, self.max_new_tokens)]
        return [Answer(text=data.extract_answer(text), output=text, lenient=data.parse_answer(text)) for text in outputs]

    def report(self) -> dict:
        return {"trained": self.train, "distractors": self.distractors, "leak_answer": self.leak_answer,
                "encoder": self.encoder.get("name"), **self._facts}
