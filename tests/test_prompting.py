"""ChatGPT4MT prompt strategies: the exact released templates, and the task refusing a method it cannot use."""

from __future__ import annotations

import pytest

from llmlab.errors import UserError
from llmlab.methods.prompting.templates import Prompt
from llmlab.tasks.translation import Translation

EXAMPLE = {"source": "Guten Morgen.", "source_lang": "German", "target_lang": "English", "direction": "deen"}


def test_templates_are_the_released_ones():
    assert Prompt(strategy="tsp").messages(EXAMPLE) == [
        {"role": "system", "content": "You are a machine translation system."},
        {"role": "user", "content": "Please provide the English translation for the following sentence: Guten Morgen."}]
    assert Prompt(strategy="dsp", domain="news").messages(EXAMPLE)[0]["content"] == \
        "You are a machine translation system that translates sentences in the news domain."
    assert Prompt(strategy="zs_cot").messages(EXAMPLE)[1]["content"].endswith("complete sentence:Guten Morgen.")
    # the baseline (method=none): no system message (template/chatgpt.py)
    assert Translation(direction="deen").messages(None, {"source": "Guten Morgen."}) == [
        {"role": "user", "content": "Please provide the English translation for the following sentence: Guten Morgen."}]


def test_few_shot_lines_come_from_the_demonstration_files(tmp_path):
    (tmp_path / "s").write_text("Hallo.\nDanke.\nTschüss.\n")
    (tmp_path / "t").write_text("Hello.\nThanks.\nBye.\n")
    p = Prompt(strategy="icl", shots=2, demo_source=str(tmp_path / "s"), demo_target=str(tmp_path / "t"))
    p.check()
    assert p.messages(EXAMPLE)[1]["content"] == ("German: Hallo. English: Hello.\nGerman: Danke. English: Thanks.\n"
                                                 "German: Guten Morgen. English: ")
    with pytest.raises(UserError, match="needs method.shots"):
        Prompt(strategy="icl").check()
