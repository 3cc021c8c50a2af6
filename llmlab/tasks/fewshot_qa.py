"""Few-shot BoolQ, CommonsenseQA, RACE and WinoGrande as the calibration-data paper evaluates a pruned model
(Bandari et al., EMNLP 2024; abx393/llm-pruning-calibration-data lib/eval.py `eval_acc_boolq`,
`eval_acc_commonsense_qa`, `eval_acc_race`, `eval_acc_winogrande`, test prompts from lib/data.py):

- the prompt: the release's three fixed exemplars, a blank line, then the test item in the release's template
  (llmlab/data/qa_sets.py: "Question: {passage}{question}\\nAnswer:",
  "Question: ...\\nChoices:\\nA. ...\\nAnswer:", "Article: ...\\nQuestion: ...\\nOptions:\\nA. ...\\n\\nAnswer:",
  "Sentence: ...\\nOptions:\\n1. ...\\n2. ...\\nAnswer:"), the whole prompt `.strip()`ped. The exemplars are kept as the release writes them, quirks included: BoolQ's
  exemplars end in "Label: true" while its test items end in "Answer:"; WinoGrande's first exemplar is a RACE
  question with two made-up options; one RACE exemplar has "Options: \\nChoices:"; stray tabs and trailing
  spaces stay (they reach the model);
- greedy generation, at most 20 new tokens (generation stops at the first newline: the parse reads no further);
- the answer: the output's first line, stripped; correct when it equals the gold case-insensitively ("true" /
  "false" for BoolQ, a letter for CommonsenseQA and RACE, "1" / "2" for WinoGrande): `<subset>/answer_match`,
  the paper's accuracy.
Beside it, not the paper's: `answer_match_lenient` (the first line starts with the gold, then a non-word
character or the end: "B. populated areas" counts for B) and `label_nll`, the gold's per-token NLL after the
same prompt.

Test sets as the release reads them: BoolQ validation (3,270), CommonsenseQA validation (1,221), RACE test
(all, 4,934), WinoGrande validation (1,267); local copies in each release's layout, or the hub.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from llmlab.data import qa_sets
from llmlab.metrics.registry import register
from llmlab.tasks.fewshot_nli import FewShotNLI

register("answer_match", "the output's first line, stripped, equals the gold answer case-insensitively (the "
         "calibration-data paper's lib/eval.py eval_acc_boolq / commonsense_qa / race / winogrande), x100",
         unit="x100")
register("answer_match_lenient", "the output's first line starts with the gold answer, then a non-word character or "
         "the end (not the paper's), x100", unit="x100")

SUBSETS = ("boolq", "commonsense_qa", "race", "winogrande")

# the release's exemplars (lib/eval.py <subset>_question_answer_template), as blocks
BOOLQ_SHOTS = [
    'Question: Persian (/ˈpɜːrʒən, -ʃən/), also known by its endonym Farsi (فارسی fārsi (fɒːɾˈsiː) ( listen)), '
    'is one of the Western Iranian languages within the Indo-Iranian branch of the Indo-European language '
    'family. It is primarily spoken in Iran, Afghanistan (officially known as Dari since 1958), and Tajikistan '
    '(officially known as Tajiki since the Soviet era), and some other regions which historically were '
    'Persianate societies and considered part of Greater Iran. It is written in the Persian alphabet, a '
    'modified variant of the Arabic script, which itself evolved from the Aramaic alphabet. do iran and '
    'afghanistan speak the same language\t\nLabel: true',
    'Question: Good Samaritan laws offer legal protection to people who give reasonable assistance to those '
    'who are, or who they believe to be, injured, ill, in peril, or otherwise incapacitated. The protection is '
    "intended to reduce bystanders' hesitation to assist, for fear of being sued or prosecuted for "
    'unintentional injury or wrongful death. An example of such a law in common-law areas of Canada: a good '
    'Samaritan doctrine is a legal principle that prevents a rescuer who has voluntarily helped a victim in '
    'distress from being successfully sued for wrongdoing. Its purpose is to keep people from being reluctant '
    'to help a stranger in need for fear of legal repercussions should they make some mistake in treatment. By '
    'contrast, a duty to rescue law requires people to offer assistance and holds those who fail to do so '
    'liable. do good samaritan laws protect those who help at an accident\nLabel: true',
    'Question: As with other games in The Elder Scrolls series, the game is set on the continent of Tamriel. '
    'The events of the game occur a millennium before those of The Elder Scrolls V: Skyrim and around 800 '
    'years before The Elder Scrolls III: Morrowind and The Elder Scrolls IV: Oblivion. It has a broadly '
    'similar structure to Skyrim, with two separate conflicts progressing at the same time, one with the fate '
    'of the world in the balance, and one where the prize is supreme power on Tamriel. In The Elder Scrolls '
    'Online, the first struggle is against the Daedric Prince Molag Bal, who is attempting to meld the plane '
    'of Mundus with his realm of Coldharbour, and the second is to capture the vacant imperial throne, '
    'contested by three alliances of the mortal races. The player character has been sacrificed to Molag Bal, '
    'and Molag Bal has stolen their soul, the recovery of which is the primary game objective. is elder '
    'scrolls online the same as skyrim\t\nLabel: false',
]
COMMONSENSE_QA_SHOTS = [
    'Question: Sammy wanted to go to where the people were. Where might he go?\nChoices:\nA. race track\nB. '
    'populated areas\nC. the desert\nD. apartment\nE. roadblock\nAnswer: B',
    'Question: To locate a choker not located in a jewelry box or boutique where would you go? \nChoices: \nA. '
    'jewelry store\nB. neck\nC. jewlery box\nD. jewelry box\nE. boutique\nAnswer: A',
    'Question: Google Maps and other highway and street GPS services have replaced what?\nChoices:\nA. united '
    'states\nB. mexico\nC. countryside\nD. atlas\nE. oceans\nAnswer: D',
]
_RACE_ARTICLE = (
    'Last week I talked with some of my students about what they wanted to do after they graduated, and what '
    'kind of job prospects they thought they had. Given that I teach students who are training to be doctors, '
    'I was surprised do find that most thought that they would not be able to get the jobs they wanted without '
    '"outside help". "What kind of help is that?" I asked, expecting them to tell me that they would need a or '
    'family friend to help them out. "Surgery ," one replied. I was pretty alarmed by that response. It seems '
    'that the graduates of today are increasingly willing to go under the knife to get ahead of others when it '
    'comes to getting a job . One girl told me that she was considering surgery to increase her height. "They '
    'break your legs, put in special extending screws, and slowly expand the gap between the two ends of the '
    'bone as it re-grows, you can get at least 5 cm taller!" At that point, I was shocked. I am short, I '
    "can't deny that, but I don't think I would put myself through months of agony just to be a few "
    "centimetres taller. I don't even bother to wear shoes with thick soles, as I'm not trying to hide the "
    'fact that I am just not tall! It seems to me that there is a trend towards wanting "perfection" , and '
    'that is an ideal that just does not exist in reality. No one is born perfect, yet magazines, TV shows and '
    'movies present images of thin, tall, beautiful people as being the norm. Advertisements for slimming '
    'aids, beauty treatments and cosmetic surgery clinics fill the pages of newspapers, further creating an '
    'idea that "perfection" is a requirement, and that it must be purchased, no matter what the cost. In my '
    'opinion, skills, rather than appearance, should determine how successful a person is in his/her chosen '
    'career.')
RACE_SHOTS = [
    f"Article: {_RACE_ARTICLE}\nQuestion: We can know from the passage that the author works as a_.\nOptions:\n"
    "A. doctor\nB. model\nC. teacher\nD. reporter\nAnswer: C",
    f"Article: {_RACE_ARTICLE}\nQuestion: Many graduates today turn to cosmetic surgery to_.\nOptions: \n"
    "A. marry a better man/woman\nB. become a model\nC. get an advantage over others in job-hunting\n"
    "D. attract more admirers\nAnswer: C",
    f"Article: {_RACE_ARTICLE}\t\nQuestion: \t\nAccording to the passage, the author believes that_.\nOptions: \n"
    "Choices:\nA. everyone should purchase perfection, whatever the cost\n"
    "B. it's right for graduates to ask for others to help them out in hunting for jobs\n"
    "C. it is one's appearance instead of skills that really matters in one's career\n"
    "D. media are to blame for misleading young people in their seeking for surgery\nAnswer: D",
]
WINOGRANDE_SHOTS = [
    'Sentence: We can know from the passage that the author works as a_.\nOptions:\n1. garage\n2. '
    'backyard\nAnswer: 1',
    'Sentence: The doctor diagnosed Justin with bipolar and Robert with anxiety. _ had terrible nerves '
    'recently.\nOptions: \n1. Justin\n2. Robert\nAnswer: 2',
    'Sentence: Dennis drew up a business proposal to present to Logan because _ wants his '
    'investment.\nOptions: \n1. Dennis\n2. Logan\nAnswer: 1',
]
SHOTS = {"boolq": BOOLQ_SHOTS, "commonsense_qa": COMMONSENSE_QA_SHOTS, "race": RACE_SHOTS,
         "winogrande": WINOGRANDE_SHOTS}


@dataclass
class FewShotQA(FewShotNLI):
    name: ClassVar[str] = "fewshot_qa"
    SUBSETS: ClassVar[tuple] = SUBSETS
    metric: ClassVar[str] = "answer_match"
    stop: ClassVar[str] = "\n"          # the release reads the first line only

    subset: str = "boolq"
    path: str | None = None            # the release directory or file (llmlab/data/qa_sets.py); null: the hub
    max_new_tokens: int = 20           # lib/eval.py model.generate(max_new_tokens=20)

    def exemplars(self) -> str:
        return "\n\n".join(SHOTS[self.subset])

    def rows(self) -> list[dict]:
        return [{"text": r["prompt"], "gold": r["answer"]} for r in qa_sets.examples(self.subset, self.path, "test")]

    def answer(self, output: str) -> str:
        return output.split("\n")[0].strip()

    def correct(self, answer: str, gold: str) -> bool:
        return answer.lower() == str(gold).lower()

    def lenient(self, output: str, gold: str) -> bool:
        return re.match(re.escape(str(gold).lower()) + r"(\W|$)", self.answer(output).lower()) is not None
