"""MzsRE: multilingual zsRE (ReMaKE, Wang et al. 2023): English paired with one other language.

Files `mzsre_test_duplicate_en{XX}.json` (XX in cz, de, du, es, fr, pt, ru, th, tr, vi, zh), each a
JSON list of cases `{"en": {...}, "XX": {...}}` with the Bi-ZsRE keys per language. `lang` picks
the file when `data_path` is a directory; the paired block is the case's non-English key, which
must be `lang` (an error lists the keys found otherwise). Probes and metrics: llmlab.tasks.editing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from llmlab.errors import UserError
from llmlab.tasks.editing import ZsreStyleTask, as_list, parse_zsre_cases, read_json_data

LANGS = ("cz", "de", "du", "es", "fr", "pt", "ru", "th", "tr", "vi", "zh")


@dataclass
class MzsRE(ZsreStyleTask):
    name: ClassVar[str] = "mzsre"

    lang: str = "zh"
    edit_lang: Any = "en"
    test_lang: Any = None  # null: [en, lang]

    def __post_init__(self):
        super().__post_init__()
        if self.lang not in LANGS:
            raise UserError(f"mzsre: task.lang must be one of {', '.join(LANGS)}; got {self.lang!r}.")
        if self.test_lang is None:
            self.test_lang = ["en", self.lang]

    def load_cases(self):
        filename = self.hub_file or f"mzsre_test_duplicate_en{self.lang}.json"
        data = read_json_data(self.name, self.data_path, self.hub_id, filename)
        cases = parse_zsre_cases(data, self.name, ["en"])
        for i, case in enumerate(cases):
            if self.lang not in case:
                raise UserError(f"mzsre: record {i} has no {self.lang!r} block (it has {', '.join(map(repr, case))}); "
                                f"task.lang={self.lang} needs the file mzsre_test_duplicate_en{self.lang}.json.")
        wanted = set(as_list(self.edit_lang) + as_list(self.test_lang))
        if not wanted <= {"en", self.lang}:
            raise UserError(f"mzsre: edit_lang/test_lang must be among en and {self.lang}; got {sorted(wanted)}.")
        return cases
