"""`model=replay`: answers from a published outputs file instead of a model.

A paper's own outputs (ChatGPT translations, code completions) re-scored through the same task.
The backend has no weights (`has_logits = False`); tasks that read logits refuse it before
loading. `generate(prompts, sampling, keys=...)` answers each prompt from the file:

- a text file (`format: lines`): line i answers the prompt whose key is i (tasks pass the
  example's index in the data file); one output per line, as the MT papers publish them;
- a JSONL file (`format: jsonl`): every record with `key_field` = the prompt's key is one
  output (`text_field`); several records per key are several samples (the OOP `result.jsonl`:
  `task_id` and `completion`).

A prompt whose key has no output is an error naming the key and the file (never a silent blank).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmlab.errors import UserError


@dataclass
class ReplayModel:
    path: str
    outputs: dict[Any, list[str]]
    name: str = "replay"
    spec: dict = field(default_factory=dict)
    has_logits = False
    tokenizer = None

    @property
    def max_length(self) -> int:
        return 1 << 30

    def generate(self, prompts: list, sampling, chat: bool | None = None, keys: list | None = None) -> list[list[str]]:
        if keys is None or len(keys) != len(prompts):
            raise UserError(f"model=replay answers by example key, but the task gave {'no' if keys is None else len(keys)} "
                            f"keys for {len(prompts)} prompts; this task cannot run on replayed outputs.")
        out = []
        for key in keys:
            found = self.outputs.get(key, self.outputs.get(str(key)))
            if not found:
                raise UserError(f"model=replay: {self.path} has no output for example {key!r} "
                                f"({len(self.outputs)} keyed outputs in the file). Check model.path and model.format.")
            n = sampling.n if sampling is not None else 1
            out.append(list(found[:n]) if len(found) >= n else list(found))
        return out


def read_outputs(path: Path, fmt: str, key_field: str, text_field: str) -> dict[Any, list[str]]:
    if fmt == "lines":
        lines = path.read_text(encoding="utf-8").split("\n")
        if lines and lines[-1] == "":
            lines = lines[:-1]
        return {i: [line] for i, line in enumerate(lines)}
    outputs: dict[Any, list[str]] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            key, text = record[key_field], record[text_field]
        except (ValueError, KeyError, TypeError) as err:
            raise UserError(f"model=replay: {path}:{n} is not a JSON object with {key_field!r} and {text_field!r} "
                            f"({type(err).__name__}); set model.key_field / model.text_field to the file's keys.") from None
        outputs.setdefault(key, []).append(text if isinstance(text, str) else str(text))
    return outputs


def load(spec: dict, device: str = "cpu", dtype: str | None = None, seed: int = 0) -> ReplayModel:
    path = spec.get("path")
    if not path:
        raise UserError("model=replay needs the outputs file: model.path=/path/to/outputs (one output per line, or "
                        "JSONL with model.format=jsonl).")
    path = Path(str(path)).expanduser()
    if not path.is_file():
        raise UserError(f"model=replay: the outputs file {path} does not exist; set model.path to a published outputs file.")
    fmt = spec.get("format") or ("jsonl" if path.suffix == ".jsonl" else "lines")
    if fmt not in ("lines", "jsonl"):
        raise UserError(f"model=replay: model.format must be lines or jsonl; got {fmt!r}.")
    outputs = read_outputs(path, fmt, spec.get("key_field") or "task_id", spec.get("text_field") or "completion")
    return ReplayModel(path=str(path), outputs=outputs, name=spec.get("name") or f"replay:{path.name}", spec=spec)
