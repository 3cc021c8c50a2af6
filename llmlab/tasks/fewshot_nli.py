"""Few-shot NLI as the calibration-data paper evaluates a pruned model (Bandari et al., EMNLP 2024;
abx393/llm-pruning-calibration-data lib/eval.py `eval_acc_esnli`, `eval_acc_rte`, `eval_acc_anli`):

- the prompt: the release's fixed exemplars (e-SNLI: nine SNLI training pairs, three per premise, "Label:
  neutral"; RTE: three RTE training pairs, "Label: not entailment"; ANLI: nine ANLI training pairs, the same
  for every round), a blank line, then the test pair as
  "Premise: {p}\\nHypothesis: {h}\\nLabel:" (the template is `.strip()`ped: no trailing space);
- greedy generation (the release: at most 20 new tokens; its later batched version 5 for e-SNLI, 10 for
  RTE); the answer is the output before the first blank line, stripped;
- correct when it equals the gold label string exactly ("entailment" / "neutral" / "contradiction";
  RTE "entailment" / "not entailment"): `<subset>/label_match` (the paper's accuracy).
Beside it, not the paper's: `label_match_lenient` (the first line, lower-cased, starts with the gold label)
and `label_nll`, the gold label's per-token NLL after the same prompt (continuous; a small model sits near
chance on accuracy). `rationale: true` is the release's CoT template (e-SNLI: three exemplars with
explanations; ANLI: the nine with the annotators' reasons; the answer is what follows "So the answer is " in
the last sentence of the first paragraph).

Files: e-SNLI's release directory (line-aligned s1/s2/labels .test; the release reads the hub's esnli
test split, the same 9,824 pairs, but the release files are tokenized, "packages . " where the hub has
"packages."), GLUE RTE in the official TSV layout (dev: the test labels are hidden;
the release reads the hub's glue/rte validation split, the same 277 pairs), ANLI's release anli_v1.0
(R<k>/test.jsonl; the release reads the hub's anli test_r<k> at a pinned revision, which is the default when
no path is given: llmlab/data/qa_sets.py).

The release's batched version of these two evaluators returns 0 after printing the first example (a
debugging `return 0` left in the loop): its numbers for these tasks, if they came from that version, are
not reproducible from the code; here the loop scores every pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from llmlab.data import qa_sets
from llmlab.errors import UserError
from llmlab.generation import Sampling
from llmlab.metrics.registry import register
from llmlab.models.probes import completions_with_gold_nll
from llmlab.tasks.base import BatchedTask

register("label_match", "the output before the first blank line, stripped, equals the gold label string exactly "
         "(the calibration-data paper's lib/eval.py eval_acc_esnli / eval_acc_rte), x100", unit="x100")
register("label_match_lenient", "the output's first line, lower-cased, starts with the gold label (not the paper's), x100",
         unit="x100")
register("label_nll", "mean negative log-likelihood per token of the gold label after the few-shot prompt "
         "(teacher-forced), nats", higher_is_better=False, unit="nats/token")

SUBSETS = ("esnli", "rte", "anli_r1", "anli_r2", "anli_r3")
RATIONALES = ("esnli", "anli_r1", "anli_r2", "anli_r3")

# the release's exemplars (lib/eval.py esnli_premise_hypothesis_label_template: SNLI training pairs; the tabs
# that end some of its lines are kept, as they reach the model)
_HORSE = "A person on a horse jumps over a broken down airplane."
_KIDS = "Children smiling and waving at camera"
_BOY = "A boy is jumping on skateboard in the middle of a red bridge."
ESNLI_SHOTS = [
    (_HORSE + "\t", "A person is training his horse for a competition.", "neutral"),
    (_HORSE + "\t", "A person is at a diner, ordering an omelette.\t", "contradiction"),
    (_HORSE + "\t", "A person is outdoors, on a horse.\t", "entailment"),
    (_KIDS, "They are smiling at their parents", "neutral"),
    (_KIDS, "There are children present", "entailment"),
    (_KIDS, "The kids are frowning\t", "contradiction"),
    (_BOY + "\t", "The boy skates down the sidewalk.", "contradiction"),
    (_BOY, "The boy does a skateboarding trick.\t", "entailment"),
    (_BOY, "The boy is wearing safety equipment.", "neutral"),
]
# esnli_premise_hypothesis_rationale_label_template (with explanations)
ESNLI_COT_SHOTS = [
    (_HORSE + "\t", "A person is training his horse for a competition.",
     "the person is not necessarily training his horse. So the answer is neutral."),
    (_HORSE + "\t", "A person is at a diner, ordering an omelette.\t",
     "One cannot be on a jumping horse cannot be a diner ordering food. So the answer is contradiction."),
    (_HORSE + "\t", "A person is outdoors, on a horse.\t",
     "a broken down airplane is outdoors. So the answer is entailment."),
]
# rte_premise_hypothesis_label_template (RTE training pairs)
RTE_SHOTS = [
    ("No Weapons of Mass Destruction Found in Iraq Yet.", "Weapons of Mass Destruction Found in Iraq.", "not entailment"),
    ("A place of sorrow, after Pope John Paul II died, became a place of celebration, as Roman Catholic faithful "
     "gathered in downtown Chicago to mark the installation of new Pope Benedict XVI.\t",
     "Pope Benedict XVI is the new leader of the Roman Catholic Church.", "entailment"),
    ("Herceptin was already approved to treat the sickest breast cancer patients, and the company said, Monday, it "
     "will discuss with federal regulators the possibility of prescribing the drug for more breast cancer patients.\t",
     "Herceptin can be used to treat breast cancer.", "entailment"),
]
# anli_premise_hypothesis_label_template (ANLI training pairs; the tabs that end some lines are kept)
ANLI_SHOTS = [
    ('Linguistics is the scientific study of language, and involves an analysis of language form, language '
     'meaning, and language in context. The earliest activities in the documentation and description of '
     'language have been attributed to the 4th century BCE Indian grammarian Pāṇini, who wrote a formal '
     'description of the Sanskrit language in his "Aṣṭādhyāyī ".',
     'Form and meaning are the only aspects of language linguistics is concerned with.\t',
     'contradiction'),
    ('Franco Zeffirelli, KBE Grande Ufficiale OMRI (] ; born 12 February 1923) is an Italian director and '
     'producer of operas, films and television. He is also a former senator (1994–2001) for the Italian '
     'centre-right "Forza Italia" party. Recently, Italian researchers have found that he is one of the few '
     'distant relatives of Leonardo da Vinci.',
     'Franco Zeffirelli had a political career\t',
     'entailment'),
    ('Eme 15 is the self-titled debut studio album by Mexican-Argentine pop band, Eme 15. The album was '
     'released in Mexico and Latin America on June 26, 2012 through Warner Music México, and features songs '
     'from the Nickelodeon Latin America and Televisa musical television series, Miss XV.\t',
     'Eme 15 was released in Mexico and Latin America on June 27, 2012 through Warner Music México, and '
     'features songs from the Nickelodeon Latin America and Televisa musical television series, Miss XV.',
     'contradiction'),
    ('Almost Sunrise is a 2016 American documentary film directed by Michael Collins. It recounts the story of '
     'two Iraq veterans, Tom Voss and Anthony Anderson, who, in an attempt to put their combat experience '
     'behind them, embark on a 2,700-mile trek on foot across America. It made its world premiere on the '
     'opening night of the Telluride Mountainfilm Festival on 27 May, 2016.',
     'Tom and Anthony have both killed someone.\t',
     'neutral'),
    ('Sergei Mikhailovich Grinkov (Russian: Серге́й Миха́йлович Гринько́в , February 4, 1967 — November 20, '
     '1995) was a Russian pair skater. Together with partner and wife Ekaterina Gordeeva, he was the 1988 and '
     '1994 Olympic Champion and a four-time World Champion.',
     'Sergei Mikhailovich Grinkov became the 1988 Olympic Champion with his partner while his wife cheered '
     'from the audience.',
     'contradiction'),
    ('Lee Hong-gi (; ] ; Japanese:イ•ホンギ) is a South Korean singer-songwriter, actor, writer, and fashion '
     'designer. He is best known for his singing abilities and being the main singer of the South Korean rock '
     'band F.T. Island. Lee released his first solo extended play "FM302" in South Korea on 18 November 2015 '
     'and his Japanese album "AM302" on 9 December 2015.',
     "The South Korean rock band F.T. Island is best known for it's lead singer, Lee Hong-gi.",
     'neutral'),
    ('Lost Moon: The Perilous Voyage of Apollo 13 (published in paperback as Apollo 13), is a non-fiction book '
     'first published in 1994 by astronaut James Lovell and journalist Jeffrey Kluger, about the failed April '
     '1970 Apollo 13 lunar landing mission which Lovell commanded. The book is the basis of the 1995 film '
     'adaptation "Apollo 13", directed by Ron Howard.',
     'the book wouldnt have happened if we didnt try to go into space',
     'entailment'),
    ('Will Wheaton, born Willie Mack Wheaton Jr. (born October 26, 1972) is an American singer, songwriter and '
     'musician. He grew up in Los Angeles and is the son of Gospel singer Juanita Wheaton. He studied music in '
     'his teens and was eventually tutored by Furman Fordham, whose former students include Lena Horne.',
     'Willie Mack Wheaton Jr. was born 5 days away from the end of the 10th month of 1972',
     'entailment'),
    ('3096 (3096 Tage) is a 2013 German drama film directed by Sherry Hormann. The film is based on the true '
     'story of Natascha Kampusch, a 10-year-old girl and her eight-year ordeal being kidnapped by Wolfgang '
     'Přiklopil. Northern Irish actress Antonia Campbell-Hughes portrays Kampusch, while Thure Lindhardt plays '
     'Přiklopil.',
     'Lindhardt wrote 3096.',
     'neutral'),
]
# anli_premise_hypothesis_rationale_label_template: the same pairs, the label line a rationale
ANLI_COT_LABELS = [
    'Linguistics involves an analysis of language form, language meaning, and language in context, so context '
    'is also a crucial aspect. The algorithm missed this point, perhaps. So the answer is contradiction.',
    'Franco Zeffirelli was a senator so he had a political career. The system likely was fooled because I used '
    'words not used in the context. So the answer is entailment.',
    'The album was released in June 26, 2012 not June 27, 2012. I added alot of correct info but changed one '
    'small detail. So the answer is contradiction.',
    "The prompt references combat experience, but is vague, so you don't know if that entailed killing anyone. "
    "The system might have gotten this wrong because it doesn't understand the relationship between combat in "
    'Iraq and death. So the answer is neutral.',
    'It has been stated that Sergei Mikhailovich Grinkov skated and won the Olympic Championship with his '
    'partner and wife in 1988. So the answer is contradiction.',
    'Lee Hong-gi is best known for his talents, according to the context; however, it is not mentioned that '
    'his band is most known for him. All squares are rectangles, but not all rectangles are squares. Using key '
    "words from the context (Lee Hong-gi, best known, the South Korean rock band) matched and I'm assuming the "
    'computer thought the matching strings of text was a positive. So the answer is neutral.',
    'there wouldnt have been a failed mission if we never tried to go to space. So the answer is entailment.',
    'Weird way to say date again. It hates it. So the answer is entailment.',
    'It is unknown who wrote the film. The system was confused by the facts of the narrative. So the answer is '
    'neutral.',
]
ESNLI_LABELS = ("entailment", "neutral", "contradiction")


def pair_prompt(premise: str, hypothesis: str, label: str | None = None) -> str:
    return f"Premise: {premise}\nHypothesis: {hypothesis}\nLabel:" + (f" {label}" if label is not None else "")


@dataclass
class FewShotNLI(BatchedTask):
    """The release's few-shot generation protocol: a fixed exemplar block, a blank line, the test item in the
    release's template (the whole prompt `.strip()`ped), greedy decoding, a parse of the output, a comparison
    with the gold string. Subclasses (fewshot_qa) change the exemplars, the rows, the parse and the comparison."""

    name: ClassVar[str] = "fewshot_nli"
    needs_weights: ClassVar[bool] = False   # text in, text out (label_nll needs logits: skipped without them)
    limit_means: ClassVar[str] = "the first N test items"
    SUBSETS: ClassVar[tuple] = SUBSETS
    metric: ClassVar[str] = "label_match"          # the paper's accuracy, under the name of its parse
    stop: ClassVar[str] = "\n\n"                  # nothing after the first blank line is read

    @property
    def main_metric(self) -> str:  # type: ignore[override]
        return f"{self.subset}/{self.metric}"

    subset: str = "esnli"
    path: str | None = None      # e-SNLI release directory, the GLUE directory with RTE/dev.tsv, the ANLI release
    rationale: bool = False      # --eval_rationale (e-SNLI, ANLI): the CoT template
    max_new_tokens: int = 20     # lib/eval.py model.generate(max_new_tokens=20) (CoT: 256)
    batch_size: int = 8
    label_nll: bool = True       # also the gold label's per-token NLL (a continuous score)

    def check_data(self) -> None:
        if self.subset not in self.SUBSETS:
            raise UserError(f"task.subset={self.subset!r}; {self.name} has {', '.join(self.SUBSETS)}.")
        if self.rationale and self.subset not in RATIONALES:
            raise UserError(f"{self.name}: rationale=true is the release's CoT template, which exists for "
                            f"{', '.join(RATIONALES)}; {self.subset} has none.")
        if self.subset in qa_sets.NAMES:
            qa_sets.check_local(self.subset, self.path, "test", "task")
            return
        root = Path(str(self.path)) if self.path else None
        need = root / "s1.test" if self.subset == "esnli" and root else (root / "RTE" / "dev.tsv" if root else None)
        if need is None or not need.is_file():
            hint = ("the e-SNLI release directory (s1/s2/labels .test)" if self.subset == "esnli"
                    else "the GLUE directory in the official layout (RTE/dev.tsv)")
            raise UserError(f"fewshot_nli {self.subset}: task.path={self.path} has no {need.name if need else 'file'}. "
                            f"Give {hint}, e.g. ../shared/data/{'nli/esnli' if self.subset == 'esnli' else 'glue_official'}.")

    # -- data --------------------------------------------------------------------------------------------
    def exemplars(self) -> str:
        if self.subset == "rte":
            shots = RTE_SHOTS
        elif self.subset.startswith("anli"):
            shots = [(p, h, why) for (p, h, _), why in zip(ANLI_SHOTS, ANLI_COT_LABELS)] if self.rationale else ANLI_SHOTS
        else:
            shots = ESNLI_COT_SHOTS if self.rationale else ESNLI_SHOTS
        return "\n\n".join(pair_prompt(p, h, lab) for p, h, lab in shots)

    def rows(self) -> list[dict]:
        """Test items {text (the release's test prompt), gold, and fields kept in the predictions}."""
        if self.subset in qa_sets.NAMES:
            return [{"text": r["prompt"], "gold": r["answer"], "premise": r["premise"], "hypothesis": r["hypothesis"]}
                    for r in qa_sets.examples(self.subset, self.path, "test")]
        root = Path(str(self.path))
        if self.subset == "esnli":
            read = lambda part: (root / f"{part}.test").read_text(encoding="utf-8").splitlines()
            pairs = [(p.strip(), h.strip(), lab.strip()) for p, h, lab in zip(read("s1"), read("s2"), read("labels"))
                     if lab.strip() in ESNLI_LABELS]
        else:
            from llmlab.data import glue

            pairs = [(r["text_a"], r["text_b"], ("entailment", "not entailment")[r["label"]])
                     for r in glue.load(root, "rte", "dev")]
        return [{"text": pair_prompt(p, h) + " ", "gold": lab, "premise": p, "hypothesis": h} for p, h, lab in pairs]

    def items(self, lm, ctx) -> list[dict]:
        head = self.exemplars()
        # template.format(prompt=test_prompt).strip(): the trailing space of "Label: " never reaches the model
        return [{"index": i, **r, "prompt": f"{head}\n\n{r['text']}".strip()} for i, r in enumerate(self.rows())]

    # -- the loop ------------------------------------------------------------------------------------------
    def answer(self, output: str) -> str:
        first = output.split("\n\n")[0].strip()
        if not self.rationale:
            return first
        sentences = first.split(".")
        last = sentences[-2].strip() if len(sentences) > 1 else ""  # the release's split(".")[-2]
        return last.split("So the answer is ")[-1].strip()

    def correct(self, answer: str, gold: str) -> bool:
        return answer == gold

    def lenient(self, output: str, gold: str) -> bool:
        return output.strip().split("\n")[0].lower().startswith(gold.lower())

    def run_batch(self, lm, method, batch: list[dict], ctx) -> list[dict]:
        tokens = 256 if self.rationale else self.max_new_tokens
        sampling = Sampling(max_new_tokens=tokens, temperature=0.0, seed=ctx.seed, stop=(self.stop,))
        outs, nll = completions_with_gold_nll(lm, [it["prompt"] for it in batch], [it["gold"] for it in batch], sampling,
                                              keys=[it["index"] for it in batch], score=self.label_nll)
        preds = []
        for it, out, n in zip(batch, outs, nll):
            answer = self.answer(out)
            shown = {k: v for k, v in it.items() if k not in ("prompt", "text")}
            preds.append({**shown, "output": out, "answer": answer, "correct": self.correct(answer, it["gold"]),
                          "correct_lenient": self.lenient(out, it["gold"]), "label_nll": n})
        return preds

    def aggregate(self, predictions: list[dict], ctx) -> dict[str, float]:
        n = max(1, len(predictions))
        metrics = {self.metric: 100.0 * sum(p["correct"] for p in predictions) / n,
                   f"{self.metric}_lenient": 100.0 * sum(p["correct_lenient"] for p in predictions) / n}
        nll = [p["label_nll"] for p in predictions if p["label_nll"] is not None]
        if nll:
            metrics["label_nll"] = sum(nll) / len(nll)
        counts = {}
        for p in predictions:
            counts[p["answer"]] = counts.get(p["answer"], 0) + 1
        self._answers = dict(sorted(counts.items(), key=lambda kv: -kv[1])[:8])
        return {f"{self.subset}/{k}": v for k, v in metrics.items()}

    def info(self, items, method, ctx) -> dict:
        return {"subset": self.subset, "rationale": self.rationale, "exemplars": "lib/eval.py templates",
                "most_common_answers": getattr(self, "_answers", {})}
