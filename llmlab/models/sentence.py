"""Sentence embeddings from an encoder model (mean pooling over tokens, L2-normalized), as
sentence-transformers computes them for all-MiniLM-L6-v2: the retriever of IKE and Reason-KE."""

from __future__ import annotations

import torch

from llmlab.errors import UserError


class SentenceEncoder:
    """Mean-pooled, L2-normalized sentence embeddings from an encoder LM (sentence-transformers style)."""

    def __init__(self, lm, batch_size: int = 64, max_length: int = 256):
        self.lm, self.batch_size, self.max_length = lm, batch_size, max_length

    @classmethod
    def from_spec(cls, spec: dict, method: str) -> "SentenceEncoder":
        """Load the encoder a method's config composed from the model group (`/model@encoder: ...`)."""
        from llmlab import models

        if not spec or spec.get("kind") != "encoder":
            raise UserError(f"{method}: method.encoder must be an encoder model config (kind: encoder), composed from "
                            f"the model group, e.g. model@method.encoder=minilm-l6 (tests: tiny-encoder); got "
                            f"{spec.get('name') if spec else 'nothing'}.")
        return cls(models.load(spec))

    @torch.inference_mode()
    def encode(self, texts: list[str]) -> torch.Tensor:
        chunks = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.lm.tokenizer(texts[start:start + self.batch_size], padding=True, truncation=True,
                                      max_length=self.max_length, return_tensors="pt").to(self.lm.device)
            hidden = self.lm.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            chunks.append(torch.nn.functional.normalize(pooled.float(), dim=-1))
        if not chunks:
            return torch.zeros(0, 1)
        return torch.cat(chunks)
