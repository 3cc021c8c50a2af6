"""A classification or regression head on an encoder (the GLUE recipe of BERT/RoBERTa/ELECTRA).

`with_head(lm, num_labels, seed)` builds transformers' `AutoModelForSequenceClassification` for the
encoder's config and puts the loaded encoder in it as its base model: the module object itself, so
whatever a method's `prepare` did to the encoder (pruned, quantized, experts merged) is what gets
fine-tuned. Only the head (BERT: the pooler already in the encoder + dropout + linear; RoBERTa/ELECTRA:
dense + tanh + linear) is new, initialised by the model's own `_init_weights` under `seed`.
`num_labels=1` is regression (MSE), as transformers and the GLUE recipes treat STS-B.
"""

from __future__ import annotations

import copy

import torch

from llmlab.errors import UserError


def with_head(lm, num_labels: int, seed: int = 0):
    """The encoder of `lm` inside a sequence-classification model with a fresh `num_labels` head."""
    import transformers

    model = lm.model
    if getattr(model.config, "num_labels", None) == num_labels and hasattr(model, "base_model") and \
            model.__class__.__name__.endswith("ForSequenceClassification"):
        return model  # model.kind=classifier loaded with this head already
    if model.__class__.__name__.endswith(("ForCausalLM", "ForConditionalGeneration")):
        raise UserError(f"model {lm.name} is a generative LM ({model.__class__.__name__}); GLUE fine-tuning needs an "
                        f"encoder (model.kind: encoder), e.g. model=minilm-l6 or model=hf model.path=roberta-large "
                        f"model.kind=encoder.")
    config = copy.deepcopy(model.config)
    config.num_labels = num_labels
    config.problem_type = "regression" if num_labels == 1 else "single_label_classification"
    torch.manual_seed(seed)
    with torch.device("meta"):  # the encoder inside is replaced; only the head needs real memory
        clf = transformers.AutoModelForSequenceClassification.from_config(config)
    setattr(clf, clf.base_model_prefix, model)
    device = lm.device
    for name, module in clf.named_children():
        if name == clf.base_model_prefix:
            continue
        module.to_empty(device=device)
        module.apply(clf._init_weights)
    return clf.to(dtype=next(model.parameters()).dtype)
