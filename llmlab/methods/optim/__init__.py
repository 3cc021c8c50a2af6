"""Optimizers as methods (FSAM, Zhong et al., Findings of EMNLP 2022; official code WHU-ZQH/FSAM4PLM,
fairseq-FSAM/optim/samsgd.py): SAM, ASAM, ESAM, GSAM, each with or without the Fisher mask.

A method here provides the `Optimization` capability: a task that fine-tunes asks it for the
optimizer that wraps its base optimizer (`method.optimizer(model, base)`), and the training loop
(llmlab.training.finetune) runs the two passes through it. `method=none` is the base AdamW alone."""
