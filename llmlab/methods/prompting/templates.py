"""ChatGPT4MT's prompts (Romainpkq/ChatGPT4MT template/*.py) as methods: each builds the chat messages
for one source sentence. `method=none` on the translation task is the paper's baseline
(template/chatgpt.py: no system message, "Please provide the [TGT] translation for the following
sentence: " + line). [TGT]/[SRC] are the language names, [DOM] the domain.

  tsp       template/TSP.py      system "You are a machine translation system." + the baseline request
  dsp       template/DSP.py      system "... that translates sentences in the [DOM] domain." (right domain)
  f_dsp     DSP with a wrong domain (the paper's F-DSP)
  zs_cot    template/ZS_CoT.py   "... step by step and then provide the complete sentence:" + line (no space, as released)
  icl       template/1_shot.py / 3_shot.py: "[SRC]: [S_i] [TGT]: [T_i]" lines, then "[SRC]: line [TGT]: "
The few-shot demonstrations come from parallel files (`demo_source`, `demo_target`: `shots` lines from line
`demo_start`, 0-based); the release does not ship the ones it used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from llmlab.capabilities import PromptStrategy
from llmlab.data.parallel import read_lines
from llmlab.errors import UserError
from llmlab.methods.base import Method

SYSTEM = "You are a machine translation system."                                     # template/TSP.py
DOMAIN_SYSTEM = "You are a machine translation system that translates sentences in the {domain} domain."  # template/DSP.py
REQUEST = "Please provide the {tgt} translation for the following sentence: {source}"  # template/chatgpt.py, TSP.py
COT_REQUEST = ("Please provide the {tgt} translation for the following sentence step by step "
               "and then provide the complete sentence:{source}")                     # template/ZS_CoT.py


@dataclass
class Prompt(Method, PromptStrategy):
    name: ClassVar[str] = "prompt"
    family: ClassVar[str] = "prompting"

    strategy: str = "tsp"          # tsp | dsp | zs_cot | icl
    domain: str | None = None      # dsp / f_dsp: the domain named in the system message
    shots: int = 0                 # icl: demonstrations (1 or 3 in the paper)
    demo_source: str | None = None
    demo_target: str | None = None
    demo_start: int = 0            # icl: the first demonstration's line (e.g. past the evaluated slice of a test file)

    def __post_init__(self):
        if self.strategy not in ("tsp", "dsp", "zs_cot", "icl"):
            raise UserError(f"prompt: strategy={self.strategy!r} is not one of tsp, dsp, zs_cot, icl.")
        if self.strategy == "dsp" and not self.domain:
            raise UserError("prompt: strategy=dsp needs method.domain (e.g. news, biomedical).")

    def check(self) -> None:
        if self.strategy == "icl":
            if self.shots < 1 or not (self.demo_source and self.demo_target):
                raise UserError("prompt: strategy=icl needs method.shots >= 1 and method.demo_source / "
                                "method.demo_target (parallel files, one sentence per line; e.g. a dev split).")
            for path in (self.demo_source, self.demo_target):
                if not Path(str(path)).is_file():
                    raise UserError(f"prompt: the demonstration file {path} does not exist.")
            src, tgt = (read_lines(Path(str(p))) for p in (self.demo_source, self.demo_target))
            self._demos = list(zip(src, tgt))[self.demo_start: self.demo_start + self.shots]
            if self.demo_start < 0 or len(self._demos) < self.shots:
                raise UserError(f"prompt: method.demo_start={self.demo_start} with shots={self.shots} asks for lines "
                                f"{self.demo_start}-{self.demo_start + self.shots - 1} of {self.demo_source}, which has "
                                f"{min(len(src), len(tgt))} parallel lines; choose a start in 0-{min(len(src), len(tgt)) - self.shots}.")

    def messages(self, example: dict) -> list[dict]:
        tgt, src, line = example["target_lang"], example["source_lang"], example["source"]
        if self.strategy == "tsp":
            return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": REQUEST.format(tgt=tgt, source=line)}]
        if self.strategy == "dsp":
            return [{"role": "system", "content": DOMAIN_SYSTEM.format(domain=self.domain)},
                    {"role": "user", "content": REQUEST.format(tgt=tgt, source=line)}]
        if self.strategy == "zs_cot":
            return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": COT_REQUEST.format(tgt=tgt, source=line)}]
        demos = "".join(f"{src}: {s} {tgt}: {t}\n" for s, t in self._demos)
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"{demos}{src}: {line} {tgt}: "}]

    def report(self) -> dict:
        return {"family": self.family, "strategy": self.strategy, "domain": self.domain, "shots": self.shots,
                **({"demo_lines": [self.demo_start, self.demo_start + self.shots - 1]} if self.strategy == "icl" else {})}
