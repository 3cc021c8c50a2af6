"""zsRE: monolingual knowledge editing, as EasyEdit/MEND distribute it (zsre_mend_eval.json).

A JSON list of records `subject, src, rephrase, alt, loc, loc_ans` (plus `answers`, `pred`,
`cond`, which are ignored, and an optional `portability`: an object or a list of objects with
`New Question`/`New Answer`). Records with an empty `alt` are skipped, as EasyEdit's ZsreDataset
does. Probes and metrics: llmlab.tasks.editing (one direction, en_en).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from llmlab.errors import UserError
from llmlab.tasks.editing import ZsreStyleTask, parse_block, read_json_data


@dataclass
class ZsRE(ZsreStyleTask):
    name: ClassVar[str] = "zsre"
    default_file: ClassVar[str] = "zsre_mend_eval.json"

    edit_lang: Any = "en"
    test_lang: Any = "en"

    def load_cases(self):
        data = read_json_data(self.name, self.data_path, self.hub_id, self.hub_file, self.default_file)
        if not isinstance(data, list):
            raise UserError(f"zsre: expected a JSON list of records, got {type(data).__name__}.")
        cases = []
        for i, raw in enumerate(data):
            block = parse_block(raw, self.name, f"record {i}")
            if block.alt.strip():
                cases.append({"en": block})
        return cases
