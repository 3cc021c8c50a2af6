"""The instruction prompt of the ATKD release (inference.py `load_data`), shared by the distillation method
(its training sequences) and the instruction-following task (its evaluation prompts)."""

from __future__ import annotations


def prompt_for(instruction: str, input_text: str | None = None) -> str:
    if input_text:
        return f"Human:\n### Instruction:\n{instruction}\n\n### Input:\n{input_text}\n\nAssistant:\n"
    return f"Human:\n### Instruction:\n{instruction}\n\nAssistant:\n"
