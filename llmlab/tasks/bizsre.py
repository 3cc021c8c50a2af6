"""Bi-ZsRE: cross-lingual knowledge editing, English <-> Chinese (Wang et al. 2023; X-KDE eval).

The data is a JSON list of cases `{"en": {...}, "zh": {...}}` with per-language keys
`subject, src, rephrase, alt, loc, loc_ans, portability{"New Question", "New Answer"}`
(X_KDE eval/data/bizsre_test.json: 1,037 cases). The edit is made in `edit_lang` and tested in
each `test_lang` (en->en, en->zh, zh->en, zh->zh); see llmlab.tasks.editing for the probes and metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from llmlab.tasks.editing import ZsreStyleTask, parse_zsre_cases, read_json_data


@dataclass
class BiZsRE(ZsreStyleTask):
    name: ClassVar[str] = "bizsre"
    default_file: ClassVar[str] = "bizsre_test.json"

    edit_lang: Any = "en"
    test_lang: Any = field(default_factory=lambda: ["en", "zh"])

    def load_cases(self):
        data = read_json_data(self.name, self.data_path, self.hub_id, self.hub_file, self.default_file)
        return parse_zsre_cases(data, self.name, ["en", "zh"])
