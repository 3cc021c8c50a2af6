"""Vanilla MoE and MEO on an encoder (He et al., "Merging Experts into One: Improving Computational Efficiency of
Mixture of Experts", EMNLP 2023; official code Shwai-He/MEO).

    method=moe   every FFN projection of every block (BERT `intermediate.dense`, `output.dense`) becomes E experts
                 with a noisy top-k gate; each routed row is computed by its k experts (k matmuls)
    method=meo   the same experts and gate; the k selected weights are merged by their gates, then one matmul

`prepare` only rebuilds the model (llmlab.methods.moe.layers): the task that fine-tunes it (task=glue) trains
experts, gates and the new parts, and adds the layers' balance losses to its loss. At the start every expert is
the pre-trained projection without its bias, as the release's `load_MoE` / `load_MEO` load them (ERRATA: the
release copies the pre-trained FFN weight into every expert of both models and drops the FFN biases). With the
gates' zero initialisation every row's gates sum to 1 over identical experts, so the rebuilt encoder starts as
the pre-trained one minus the FFN biases (`expert_bias: true` keeps them: then it starts as the pre-trained one
exactly; the token-attention block, initialised N(0, 0.02) by BERT's
`_init_weights` as in the release, adds a small perturbation at token level).

Defaults: the release's run_glue.sh (n_experts 16, k 12, moe_level task); its run_glue.py defaults are
n_experts 8, k 4. The schedule (lr 1e-5, 10 epochs, batch 16, weight decay 0.1) belongs to the task
(conf/experiment/meo_glue.yaml). The release's task descriptions (run_glue.py `task_to_descriptions`) give
the task level its input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from llmlab.capabilities import WeightTransform
from llmlab.errors import UserError
from llmlab.methods.base import Method
from llmlab.methods.moe.layers import LEVELS, MEOLinear, MoELinear, RoutedLinear, TaskEmbedding
from llmlab.models import anatomy

# run_glue.py task_to_descriptions (the task level's gate input), for the GLUE tasks
TASK_DESCRIPTIONS = {
    "cola": " The Corpus of Linguistic Acceptability (CoLA) in its full form consists of 10657 sentences from 23 "
            "linguistics publications, expertly annotated for acceptability (grammaticality) by their original "
            "authors. The public version provided here contains 9594 sentences belonging to training and development "
            "sets, and excludes 1063 sentences belonging to a held out test set.",
    "mnli": " Multi-Genre Natural Language Inference is a large-scale, crowdsourced entailment classification task. "
            "Given a pair of sentences, the goal is to predict whether the second sentence is an entailment, "
            "contradiction, or neutral with respect to the first one.",
    "mrpc": "Microsoft Research Paraphrase Corpus consists of sentence pairs automatically extracted from online news "
            "sources, with human annotations for whether the sentences in the pair are semantically equivalent.",
    "qnli": "Question Natural Language Inference is a version of SQuAD which has been converted to a binary "
            "classification task. The positive examples are (question, sentence) pairs which do contain the correct "
            "answer, and the negative examples are (question,sentence) from the same paragraph which do not contain "
            "the answer.",
    "qqp": "Quora Question Pairs is a binary classification task where the goal is to determine if two questions asked "
           "on Quora are semantically equivalent.",
    "rte": "Recognizing Textual Entailment is a binary entailment task similar to MNLI, but with much less training "
           "data.",
    "sst2": "The Stanford Sentiment Treebank is a binary single-sentence classification task consisting of sentences "
            "extracted from movie reviews with human annotations of their sentiment.",
    "stsb": "The Semantic Textual Similarity Benchmark is a collection of sentence pairs drawn from news headlines and "
            "other sources. They were annotated with a score from 1 to 5 denoting how similar the two sentences are in "
            "terms of semantic meaning.",
}
TASK_DESCRIPTIONS["mnli_mm"] = TASK_DESCRIPTIONS["mnli"]


@dataclass
class MixtureOfExperts(Method, WeightTransform):
    name: ClassVar[str] = "moe"
    family: ClassVar[str] = "moe"
    layer_class: ClassVar[type[RoutedLinear]] = MoELinear

    n_experts: int = 16          # run_glue.sh n_experts=16 (run_glue.py default 8)
    k: int = 12                  # run_glue.sh k=12 (run_glue.py default 4)
    level: str = "task"          # run_glue.sh moe_level=task: sequence | task | token
    noisy_gating: bool = True    # MoE(noisy_gating=True)
    reduce_factor: int = 16      # MoE(reduce_factor=16): the task level's gate input is 128 / 16 wide
    expert_bias: bool = False    # the release drops the FFN biases (its models build the layers with bias=False);
                                 # true: every expert also starts with the pre-trained bias
    description_size: int = 128  # run_glue.py --description_size 128
    description_length: int = 128  # the description is tokenized padded to run_glue.py's max_seq_length 128
    task_description: str | None = None  # a GLUE task name (its release description) or the text itself
    _facts: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self):
        if self.level not in LEVELS:
            raise UserError(f"method.level={self.level!r}; {self.name} routes at {', '.join(LEVELS)} level "
                            f"(run_glue.py --moe_level).")
        if not 1 <= int(self.k) <= int(self.n_experts):
            raise UserError(f"method.k={self.k} must be between 1 and method.n_experts={self.n_experts} (the "
                            f"number of experts each routed row selects).")

    def check(self) -> None:
        if self.level == "task" and not self.task_description:
            raise UserError(f"method={self.name} method.level=task routes on a task description, and none is given: "
                            f"set method.task_description=<a GLUE task name, or the text> (with task=glue it is the "
                            f"task's subset), or choose method.level=sequence|token.")

    def check_model(self, spec: dict) -> None:
        kind = (spec or {}).get("kind") or "causal"
        if kind not in ("encoder", "classifier"):
            raise UserError(f"method={self.name} replaces the FFN projections of BERT-style encoders; model "
                            f"{(spec or {}).get('name')} is model.kind={kind}. Use an encoder: model=minilm-l6, or "
                            f"model=hf model.path=bert-base-uncased model.kind=encoder.")

    def description_text(self) -> str:
        d = str(self.task_description)
        return TASK_DESCRIPTIONS.get(d, d)

    def layer_kwargs(self) -> dict:
        return {"reduce_factor": self.reduce_factor}

    def prepare(self, lm, ctx):
        model = lm.model
        torch.manual_seed(ctx.seed)
        task = None
        if self.level == "task":
            # run_glue.py: tokenizer(descriptions, padding="max_length", max_length=128, truncation=True): the pads
            # are embedded and averaged with the words
            ids = lm.tokenizer(self.description_text(), padding="max_length", max_length=self.description_length,
                               truncation=True)["input_ids"]
            task = TaskEmbedding(ids, model.config.vocab_size, self.description_size)
            task.table.weight.data.normal_(0.0, getattr(model.config, "initializer_range", 0.02))
            model.add_module("moe_task_embedding", task)
        replaced = 0
        for block in anatomy.blocks(model):
            for path in ("intermediate.dense", "output.dense"):
                parent_path, attr = path.split(".")
                parent = getattr(block, parent_path, None)
                old = getattr(parent, attr, None) if parent is not None else None
                if not isinstance(old, torch.nn.Linear):
                    raise UserError(f"method={self.name} replaces the FFN projections of BERT-style encoders "
                                    f"(intermediate.dense, output.dense); {type(block).__name__} has none. Use an "
                                    f"encoder: model=minilm-l6, model=hf model.path=bert-base-uncased model.kind=encoder.")
                bias = old.bias.data if (self.expert_bias and old.bias is not None) else None
                layer = self.layer_class(old.weight.data, self.n_experts, self.k, self.level, task=task,
                                         noisy=self.noisy_gating, bias=bias, **self.layer_kwargs())
                for module in layer.modules():   # the new parts as the model initialises its own (N(0, 0.02))
                    if isinstance(module, torch.nn.Linear) and hasattr(model, "_init_weights"):
                        model._init_weights(module)
                setattr(parent, attr, layer.to(device=old.weight.device, dtype=old.weight.dtype))
                replaced += 1
        n_params = anatomy.parameter_count(model)
        self._facts = {"routed_layers": replaced, "n_experts": self.n_experts, "k": self.k, "level": self.level,
                       "expert_bias": self.expert_bias, "parameters": n_params, "variant": self.name}
        return lm

    def summary(self) -> str | None:
        f = self._facts
        if not f:
            return None
        return (f"{self.name}: {f['routed_layers']} FFN projections routed ({f['n_experts']} experts, top-{f['k']}, "
                f"{f['level']} level); {f['parameters'] / 1e6:.1f} M parameters")


@dataclass
class MergingExpertsIntoOne(MixtureOfExperts):
    name: ClassVar[str] = "meo"
    layer_class: ClassVar[type[RoutedLinear]] = MEOLinear

    reduce_factor: int = 64        # MEO(reduce_factor=64): the task level's gate input is 128 / 64 wide
    token_reduce_factor: int = 64  # TokenAtt(reduce_factor=64) at token level

    def layer_kwargs(self) -> dict:
        return {"reduce_factor": self.reduce_factor, "token_reduce_factor": self.token_reduce_factor}
