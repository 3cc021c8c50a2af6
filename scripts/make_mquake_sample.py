"""Write a small two-hop knowledge-editing set in MQuAKE's original JSON format.

MQuAKE (princeton-nlp/MQuAKE) is not reachable offline. This makes a stand-in in the exact same
format so that the `mquake` task, MEMIT batch editing and Reason-KE's training and evaluation can
run end to end on an embedded model and be timed. The scores it gives measure nothing that the
paper measures: the subjects are invented names, and the second hop (a real country's capital,
language or continent) is what a small model may or may not know.

Each case edits one fact, "<invented place> is located in the country of <A>" -> <B>, and asks
three paraphrases of a two-hop question whose new answer follows from <B>.

    python scripts/make_mquake_sample.py --out /tmp/mquake_train.json --cases 200 --seed 0
    python scripts/make_mquake_sample.py --out /tmp/mquake_eval.json --cases 50 --seed 1
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

# country: (capital, official language, continent)
COUNTRIES = {
    "France": ("Paris", "French", "Europe"), "Germany": ("Berlin", "German", "Europe"),
    "Italy": ("Rome", "Italian", "Europe"), "Spain": ("Madrid", "Spanish", "Europe"),
    "Japan": ("Tokyo", "Japanese", "Asia"), "China": ("Beijing", "Chinese", "Asia"),
    "India": ("New Delhi", "Hindi", "Asia"), "Russia": ("Moscow", "Russian", "Europe"),
    "Egypt": ("Cairo", "Arabic", "Africa"), "Kenya": ("Nairobi", "Swahili", "Africa"),
    "Brazil": ("Brasília", "Portuguese", "South America"), "Argentina": ("Buenos Aires", "Spanish", "South America"),
    "Canada": ("Ottawa", "English", "North America"), "Mexico": ("Mexico City", "Spanish", "North America"),
    "Australia": ("Canberra", "English", "Oceania"), "Greece": ("Athens", "Greek", "Europe"),
    "Portugal": ("Lisbon", "Portuguese", "Europe"), "Sweden": ("Stockholm", "Swedish", "Europe"),
    "Turkey": ("Ankara", "Turkish", "Asia"), "Thailand": ("Bangkok", "Thai", "Asia"),
}
KINDS = ["Lake", "Mount", "Fort", "Port", "Saint", "Glen", "Cape", "New"]
SYLLABLES = ["ka", "lo", "mer", "ran", "vi", "tor", "bel", "su", "den", "mar", "ol", "pin", "ra", "zen", "ad", "ul"]

# second hop: (relation, new_single_hops question, cloze, multi-hop question paraphrases, answer index)
SECOND_HOPS = [
    ("capital", "What is the capital of {c}?", "The capital of {c} is",
     ["What is the capital of the country where {s} is located?",
      "Which city is the capital of the country that contains {s}?",
      "{s} is in a country whose capital is which city?"], 0),
    ("official language", "What is the official language of {c}?", "The official language of {c} is",
     ["What is the official language of the country where {s} is located?",
      "Which language is official in the country that contains {s}?",
      "People in the country of {s} officially speak which language?"], 1),
    ("continent", "On which continent is {c} located?", "{c} is located on the continent of",
     ["On which continent is the country where {s} is located?",
      "The country containing {s} lies on which continent?",
      "Which continent is home to the country where {s} is?"], 2),
]


def invented_name(rng: random.Random, used: set[str]) -> str:
    while True:
        word = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()
        name = f"{rng.choice(KINDS)} {word}"
        if name not in used:
            used.add(name)
            return name


def hop(question: str, cloze: str, answer: str) -> dict:
    return {"question": question, "cloze": cloze, "answer": answer, "answer_alias": []}


def make_case(case_id: int, rng: random.Random, used: set[str]) -> dict:
    subject = invented_name(rng, used)
    old, new = rng.sample(sorted(COUNTRIES), 2)
    relation, question, cloze, paraphrases, index = rng.choice(SECOND_HOPS)
    first_q, first_cloze = f"In which country is {subject} located?", f"{subject} is located in the country of"
    return {
        "case_id": case_id,
        "requested_rewrite": [{
            "prompt": "{} is located in the country of", "relation_id": "P17", "subject": subject,
            "target_new": {"str": new, "id": f"country:{new}"}, "target_true": {"str": old, "id": f"country:{old}"},
            "question": first_q,
        }],
        "questions": [p.format(s=subject) for p in paraphrases],
        "answer": COUNTRIES[old][index], "answer_alias": [],
        "new_answer": COUNTRIES[new][index], "new_answer_alias": [],
        "single_hops": [hop(first_q, first_cloze, old),
                        hop(question.format(c=old), cloze.format(c=old), COUNTRIES[old][index])],
        "new_single_hops": [hop(first_q, first_cloze, new),
                            hop(question.format(c=new), cloze.format(c=new), COUNTRIES[new][index])],
        "orig": {"triples_labeled": [[subject, "country", old], [old, relation, COUNTRIES[old][index]]],
                 "new_triples_labeled": [[subject, "country", new], [new, relation, COUNTRIES[new][index]]],
                 "edit_triples": [[subject, "country", new]]},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="JSON file to write (refuses to overwrite)")
    parser.add_argument("--cases", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.out.exists():
        raise SystemExit(f"make_mquake_sample: {args.out} exists; choose another --out (nothing is overwritten).")
    rng, used = random.Random(args.seed), set()
    cases = [make_case(i, rng, used) for i in range(args.cases)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(cases, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"wrote {len(cases)} MQuAKE-format cases to {args.out}")


if __name__ == "__main__":
    main()
