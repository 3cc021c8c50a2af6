"""ZSAQ: zero-shot sharpness-aware quantization (Zhu, Zhong, Shen, Ding, Liu, Du, Tao, "Zero-Shot
Sharpness-Aware Quantization for Pre-trained Language Models", EMNLP 2023). No official code is public, and the
paper's body was not readable here: this module rests on its abstract and on secondary summaries of it, and every
choice they do not settle is ours, marked ASSUMPTION below. Read it as "ZSAQ as described", not as the paper's
implementation.

What the abstract and summaries say (the ground):
- zero-shot: the quantized model never sees the task's data; a generator makes its inputs;
- a minimax problem: the quantized model minimises the divergence between the full-precision and the quantized
  model's outputs; the generator maximises it (generative adversarial learning);
- a feature adaptation module maps the generator's continuous token representations into the quantized model's
  representation space, so gradients reach the generator without sampling discrete words;
- SAM-SGA: the quantized model's step is sharpness-aware (SAM), the generator's a gradient ascent step,
  alternating; the ablation without SAM is plain stochastic gradient descent-ascent (SGDA: `sam: false`).

Our choices (ASSUMPTION):
- the generator is a pre-trained causal LM from the model group (`/model@generator`; secondary summaries name an
  OPT model; cpu scale: smollm2-135m), fed uniformly random token ids of `seq_length`; its last hidden states are
  the "continuous token representations";
- the feature adaptation module is one linear map from the generator's width to the quantized model's embedding
  width; its output enters the encoder as `inputs_embeds` (BERT then adds position and segment embeddings and
  its LayerNorm), with every position attended;
- the divergence is KL(p_fp || p_q) of the class distributions (MSE of a regression output), as in QAT
  (llmlab.methods.quant.ptq.divergence);
- one SAM-SGA iteration: draw random ids z; the quantized model's SAM step on the generator's output for z
  (rho 0.05, the SAM default; AdamW, lr 2e-5) with the generator fixed; then the generator's ascent step (Adam,
  lr 1e-4) on its output for the same z with the quantized model fixed; `steps` iterations (200);
- `generator_train: all` trains the LM and the adaptation module as the max player; `adapter` only the module
  (the LM frozen: cheaper on a CPU, still a minimax); `generator_layers: N` keeps the LM's first N blocks (a CPU
  budget: their hidden states are still a pre-trained model's continuous token representations).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from llmlab.errors import UserError
from llmlab.methods.quant.ptq import Quantizer, divergence
from llmlab.models.anatomy import blocks, decoder
from llmlab.progress import progress


@dataclass
class ZSAQ(Quantizer):
    name: ClassVar[str] = "zsaq"
    trains: ClassVar[bool] = True

    generator: dict = field(default_factory=dict)  # a model config (method defaults: /model@method.generator)
    sam: bool = True               # SAM-SGA; false: SGDA (the paper's ablation without SAM)
    rho: float = 0.05              # ASSUMPTION: SAM's default radius
    steps: int = 200               # ASSUMPTION: SAM-SGA iterations
    batch_size: int = 16           # ASSUMPTION
    seq_length: int = 64           # ASSUMPTION: generated sequence length
    learning_rate: float = 2e-5    # ASSUMPTION: the quantized model's AdamW lr
    generator_lr: float = 1e-4     # ASSUMPTION: the generator's Adam lr (ascent)
    generator_train: str = "all"   # all: LM + adaptation module | adapter: the module only
    generator_layers: int | None = None  # keep the generator's first N blocks (null: all); a CPU budget, not the paper

    def __post_init__(self):
        super().__post_init__()
        if self.generator_train not in ("all", "adapter"):
            raise UserError(f"method.generator_train={self.generator_train!r}: all (the generator LM and the "
                            f"feature adaptation module ascend) or adapter (the module only).")

    def check(self) -> None:
        if not self.generator:
            raise UserError("zsaq: no generator. Compose one from the model group: method.generator=<model config> "
                            "(conf/method/zsaq.yaml: `/model@generator: smollm2-135m`).")

    @property
    def label(self) -> str:
        return "ZSAQ (SAM-SGA)" if self.sam else "ZSAQ w/o SAM (SGDA)"

    def train_quantized(self, model, teacher, data, ctx) -> None:
        from llmlab import models
        from llmlab.methods.optim.sam import SAM

        device = next(model.parameters()).device
        gen_lm = models.load(self.generator, device=str(device), seed=ctx.seed)
        if self.generator_layers:
            del blocks(gen_lm.model)[int(self.generator_layers):]
            gen_lm.model.config.num_hidden_layers = len(blocks(gen_lm.model))
        generator = decoder(gen_lm.model)  # the blocks without the LM head: the hidden states are what is used
        generator.requires_grad_(self.generator_train == "all")
        emb = model.get_input_embeddings().embedding_dim
        torch.manual_seed(ctx.seed)
        width = int(gen_lm.model.config.hidden_size)
        adapter = nn.Linear(width, emb).to(device)
        adapter_start = adapter.weight.detach().clone()
        g_params = list(adapter.parameters()) + ([p for p in generator.parameters()] if self.generator_train == "all"
                                                 else [])
        q_params = [p for p in model.parameters() if p.requires_grad]
        base = torch.optim.AdamW(q_params, lr=self.learning_rate)
        q_opt = SAM(rho=self.rho).optimizer(model, base, seed=ctx.seed) if self.sam else base
        g_opt = torch.optim.Adam(g_params, lr=self.generator_lr)
        gen = torch.Generator().manual_seed(ctx.seed)
        vocab = int(gen_lm.model.config.vocab_size)

        def hidden_states(z: torch.Tensor, grad: bool) -> torch.Tensor:
            with torch.set_grad_enabled(grad):
                return generator(input_ids=z).last_hidden_state.float()

        def div(embeds: torch.Tensor) -> torch.Tensor:
            inputs = {"inputs_embeds": embeds, "attention_mask": torch.ones(embeds.shape[:2], dtype=torch.long,
                                                                            device=device)}
            with torch.set_grad_enabled(embeds.requires_grad):
                target = teacher(**inputs).logits
            return divergence(target, model(**inputs).logits, data.regression)

        history = []
        model.eval()  # dropout off, as in QAT (methods/quant/qat.py); gradients still flow
        generator.train(self.generator_train == "all")
        for step in progress(range(int(self.steps)), desc=self.label, unit="step"):
            # min: the quantized model, sharpness-aware (SAM) or plain (SGDA), on inputs from the fixed generator
            z = torch.randint(0, vocab, (self.batch_size, self.seq_length), generator=gen).to(device)
            hidden = hidden_states(z, grad=False)
            with torch.no_grad():
                embeds = adapter(hidden)
            loss_q = div(embeds)
            q_opt.zero_grad()
            loss_q.backward()
            if self.sam:
                q_opt.perturb(step, self.learning_rate)
                q_opt.zero_grad()
                div(embeds).backward()
                q_opt.restore()
            q_opt.step()
            # max: the generator ascends the divergence, the quantized model fixed
            for p in q_params:
                p.requires_grad_(False)
            # (a frozen LM gives the same hidden states: only the adaptation module is run again, with gradients)
            hidden = hidden_states(z, grad=True) if self.generator_train == "all" else hidden
            loss_g = div(adapter(hidden))
            g_opt.zero_grad()
            (-loss_g).backward()
            g_opt.step()
            for p in q_params:
                p.requires_grad_(True)
            history.append({"step": step + 1, "divergence_q": float(loss_q.detach()),
                            "divergence_g": float(loss_g.detach())})
            if ctx is not None and hasattr(ctx, "log_step"):
                ctx.log_step(self.name, step + 1, {k: v for k, v in history[-1].items() if k != "step"})
        model.eval()
        self._facts.update({"optimizer": self.label, "steps": int(self.steps), "generator": self.generator.get("name"),
                            "generator_train": self.generator_train,
                            "adapter": f"{width} -> {emb}", "generator_layers": len(blocks(gen_lm.model)),
                            "adapter_moved": float((adapter.weight.detach() - adapter_start).norm()),
                            "divergence_first": history[0]["divergence_q"] if history else None,
                            "divergence_last": history[-1]["divergence_q"] if history else None})
