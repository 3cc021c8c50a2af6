"""IKE: in-context knowledge editing (Zheng et al. 2023), as EasyEdit runs it.

No weight changes: the prompt carries the new fact. Following EasyEdit
easyeditor/models/ike/util.py (encode_ike_facts) and ike_main.py (apply_ike_to_model):

- Demonstration pool: for every pool case (fact f = "{prompt} {target}") three sentences —
  copy   "New Fact: {f}\\nPrompt: {f}\\n\\n"
  update "New Fact: {f}\\nPrompt: {rephrase} {target}\\n\\n"
  retain "New Fact: {f}\\nPrompt: {loc} {loc_ans}\\n\\n"
  embedded with a sentence encoder (all-MiniLM-L6-v2: mean pooling over tokens, L2-normalized).
- Retrieval: the k pool sentences with the highest dot score against
  "New Fact: {prompt} {target}\\nPrompt: {prompt}\\n\\n", best first (EasyEdit's order; the IKE
  paper orders them by ascending similarity). Sentences of the case being edited are left out
  (the pool is the task's other cases, where EasyEdit uses a separate train split).
- Prompt: demonstrations + "New Fact: {prompt} {target}\\nPrompt: {query}"
  (EasyEdit evaluate.compute_icl_edit_quality); the task appends " {answer}" to score it.

Several edits at once (MQuAKE batches): EasyEdit's IKE takes one request. Here the prompt lists
the new facts of the `max_facts` requests most similar to the query (all of them when there are
that few), each as a "New Fact:" line, and retrieves demonstrations for the most similar one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from llmlab.errors import UserError
from llmlab.methods.editing.base import EditRequest, InContextEditor
from llmlab.models.sentence import SentenceEncoder

def fact_text(request: EditRequest) -> str:
    return f"{request.prompt} {request.target_new}"


def demonstrations_of(request: EditRequest) -> list[str]:
    """EasyEdit's copy / update / retain demonstrations of one pool case."""
    fact = fact_text(request)
    out = [f"New Fact: {fact}\nPrompt: {fact}\n\n"]
    extra = request.extra or {}
    if extra.get("rephrase"):
        out.append(f"New Fact: {fact}\nPrompt: {extra['rephrase']} {request.target_new}\n\n")
    if extra.get("loc"):
        out.append(f"New Fact: {fact}\nPrompt: {extra['loc']} {extra.get('loc_ans', '')}\n\n")
    return out


@dataclass
class IKE(InContextEditor):
    name: ClassVar[str] = "ike"

    k: int = 16  # EasyEdit hparams/IKE/llama-7b.yaml (and qwen2.5-7b.yaml): k 16
    encoder: dict = field(default_factory=dict)  # a model config (defaults: /model@encoder: minilm-l6); EasyEdit: all-MiniLM-L6-v2
    max_facts: int = 4  # batched edits: new facts shown per query (see module docstring)

    def __post_init__(self):
        if self.k < 0 or self.max_facts < 1:
            raise UserError(f"ike: k must be >= 0 and max_facts >= 1; got k={self.k}, max_facts={self.max_facts}.")
        self._encoder: SentenceEncoder | None = None
        self._pool_sentences: list[str] = []
        self._pool_cases: list = []
        self._pool_emb: torch.Tensor | None = None
        self._active: list[EditRequest] = []
        self._active_emb: torch.Tensor | None = None
        self._demo_cache: dict[int, list[str]] = {}

    # -- encoder and pool ----------------------------------------------------------------------
    def sentence_encoder(self) -> SentenceEncoder:
        if self._encoder is None:
            self._encoder = SentenceEncoder.from_spec(self.encoder, self.name)
        return self._encoder

    def prepare_demonstrations(self, lm, pool: list[EditRequest]) -> None:
        self._pool_sentences, self._pool_cases = [], []
        for request in pool:
            for sentence in demonstrations_of(request):
                self._pool_sentences.append(sentence)
                self._pool_cases.append((request.extra or {}).get("case_id"))
        self._pool_emb = self.sentence_encoder().encode(self._pool_sentences) if self._pool_sentences and self.k else None
        self._demo_cache = {}

    def demonstrations(self, request: EditRequest) -> list[str]:
        """The k pool sentences most similar to the request (none of the request's own case)."""
        if self._pool_emb is None or not self.k:
            return []
        key = id(request)
        if key not in self._demo_cache:
            fact = fact_text(request)
            query = self.sentence_encoder().encode([f"New Fact: {fact}\nPrompt: {request.prompt}\n\n"])[0]
            scores = self._pool_emb @ query
            own = (request.extra or {}).get("case_id")
            if own is not None:
                mask = torch.tensor([c == own for c in self._pool_cases])
                scores = scores.masked_fill(mask, float("-inf"))
            top = torch.topk(scores, min(self.k, int(torch.isfinite(scores).sum()))).indices.tolist()
            self._demo_cache[key] = [self._pool_sentences[i] for i in top]
        return self._demo_cache[key]

    # -- the edit ------------------------------------------------------------------------------
    def forget(self) -> None:
        self._active_emb, self._demo_cache = None, {}

    def relevant(self, query: str, requests: list[EditRequest]) -> list[EditRequest]:
        """The requests whose facts go into the prompt: all of them, or the max_facts most similar."""
        if len(requests) <= self.max_facts:
            return list(requests)
        enc = self.sentence_encoder()
        if self._active_emb is None or requests is not self._active:
            emb = enc.encode([fact_text(r) for r in requests])
            if requests is self._active:
                self._active_emb = emb
        else:
            emb = self._active_emb
        scores = emb @ enc.encode([query])[0]
        top = torch.topk(scores, self.max_facts).indices.tolist()
        return [requests[i] for i in top]

    def prompt_for(self, lm, query: str, requests: list[EditRequest] | None = None, lang: str | None = None) -> str:
        requests = self._active if requests is None else requests
        if not requests:
            return query
        chosen = self.relevant(query, requests)
        demos = self.demonstrations(chosen[0])
        facts = "".join(f"New Fact: {fact_text(r)}\n" for r in chosen)
        return "".join(demos) + f"{facts}Prompt: {query}"

    def report(self) -> dict:
        return {"demonstrations": self.k, "encoder": self.encoder.get("name"), "pool_sentences": len(self._pool_sentences)}
