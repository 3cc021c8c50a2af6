"""LM: a causal (or encoder) model, its tokenizer, and the spec it was loaded from.

Every model backend offers `generate(prompts, sampling)` (text in, text out; llmlab.generation):
a task that only needs text works with any of them (a local LM, an OpenAI-compatible API, a
replayed outputs file). `has_logits` says whether the backend also gives logits and weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class LM:
    model: Any  # transformers PreTrainedModel
    tokenizer: Any  # transformers PreTrainedTokenizerBase
    name: str
    spec: dict[str, Any] = field(default_factory=dict)  # the model config group, resolved
    has_logits = True

    @property
    def device(self):
        return next(self.model.parameters()).device

    @property
    def config(self):
        return self.model.config

    @property
    def max_length(self) -> int:
        """The context length to truncate prompts to (spec `max_length`, else the model's)."""
        if self.spec.get("max_length"):
            return int(self.spec["max_length"])
        return int(getattr(self.model.config, "max_position_embeddings", 2048) or 2048)

    def encode(self, text: str, chat: bool = False, add_special_tokens: bool = True) -> list[int]:
        """Token ids of `text`, inside the chat template when `chat` and the tokenizer has one."""
        if chat and getattr(self.tokenizer, "chat_template", None):
            return self.encode_messages([{"role": "user", "content": text}])
        return self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]

    def encode_messages(self, messages: list[dict]) -> list[int]:
        """Token ids of chat `messages` in the chat template, ready for the assistant's turn."""
        if not getattr(self.tokenizer, "chat_template", None):
            return self.encode("\n\n".join(m["content"] for m in messages))
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return list(ids)

    def generate(self, prompts: list, sampling, chat: bool | None = None, keys: list | None = None) -> list[list[str]]:
        """`sampling.n` text continuations of each prompt (a string or chat messages). `keys` name the
        examples for backends that answer by key (replay); a model generates and ignores them."""
        from llmlab.generation import generate_text

        return generate_text(self, prompts, sampling, chat)

    def decode(self, ids) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)
