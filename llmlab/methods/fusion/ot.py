"""Optimal-transport neuron alignment and fusion, as PTvsRI's release does it (zanchangtong/PTvsRI,
exps/utils.py: `align_activation`, `adaptive_fuse_model2`; exps/activation_utils.py: `ActivationsManager`;
exps/ground_metric.py; the settings of exps/prepare.py `get_args` and exps/fuse_with_translation_task.py).

`transport(act0, act1)`: neurons are the feature columns of two activation matrices (every position of the
batch a coordinate, padding included); the ground cost is the Euclidean distance between neurons
(`_pairwise_distances`, the fuse script's `mem_efficient`), plus 1e-5 off the diagonal (ties go to the identity);
marginals are uniform, scaled to one unit per neuron (`mu *= cardinality`), and `ot.emd` solves exactly, so `T`
is a permutation matrix of 0/1 (T[i, j] = 1: neuron i of the first model is neuron j of the second).

`fuse_release(model0, model1, batch, p0)` aligns model0 to model1 and averages, parameter by parameter in the
order the modules run (the release walks `named_parameters`, fairseq's registration order, which is the forward
order but for k/v/q inside attention; their order does not change the result):
- output side: `T_out = transport(model0's current output, model1's output)` of the module, rows of the weight
  and the bias permuted (`T_out.t() @ W`);
- input side (weights of 2+ dims only): `T_in = transport(model0's ORIGINAL input, model0's CURRENT input)`:
  the release takes the input permutation from the aligned model's own activations before and after the
  alignment of what came earlier, not from the previous module's `T_out`, and nothing ties the residual stream;
- q, k and v are aligned each on its own, by their own outputs;
- after every changed parameter model0's activations are recomputed (the whole forward: `longestCommonPrefix`
  returns '' in the release);
- embeddings (token and position) are skipped on both sides and the output projection on its output side; the
  fused model takes them from model1 (`avg_aligned_params` leaves out `embed_tokens`/`embed_positions`, and
  exps/convert_model.py copies the base model's);
- fused = p0 * aligned(model0) + (1 - p0) * model1. The release fuses RI into PT (model0 = RI, model1 = PT,
  exps/prepare.py `mbart_translation_test` returns (aux = RI, tgt = PT)) with p0 = 0.1 (exps/fuse_model.sh
  ratio=0.1; the fused checkpoint is named "ende_trimed_0.9_FT_0.1_RI").

What this recovers when model0 is a copy of model1 with its neurons permuted (tests/test_fusion.py):
- a permutation whose consumer has no weights, exactly: q and k rows permuted alike within heads (the consumer is
  the score q·kᵀ);
- not a permutation whose consumer is a weight matrix (an FFN's hidden units, consumed by fc2; v's units, consumed
  by out_proj): the consumer's T_in is right, but its T_out is taken from activations computed before T_in is
  applied (the consumer still reads its columns in the permuted order), so it re-permutes the residual-stream rows
  it should have left alone. `input_first=True` (not the release) applies T_in and recomputes before taking T_out,
  and then recovers these exactly;
- not a permutation of the residual stream, in either order: the embeddings are never aligned, so the first layer
  norm's input stays permuted while its gain and bias are un-permuted, and every later T_in is computed from
  activations that are no longer a permutation of each other.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch
from torch import nn

EPS = 1e-5  # align_activation(eps=1e-5): added to every off-diagonal cost


def neurons(act: torch.Tensor) -> torch.Tensor:
    """[..., C] activations -> [C, N]: one row per neuron, every position a coordinate."""
    return act.reshape(-1, act.shape[-1]).T


def ground_cost(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distances between the rows of a [n0, N] and b [n1, N] (ground_metric `_pairwise_distances`)."""
    d = (a * a).sum(1, keepdim=True) + (b * b).sum(1)[None] - 2.0 * a @ b.T
    return d.clamp(min=0.0).sqrt()


def transport(act0: torch.Tensor, act1: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """The exact OT plan between the neurons of two activations (a 0/1 permutation matrix for equal widths)."""
    import ot

    cost = ground_cost(neurons(act0).double(), neurons(act1).double())
    if cost.shape[0] == cost.shape[1]:
        cost = cost + (1.0 - torch.eye(cost.shape[0], dtype=cost.dtype)) * eps
    n0, n1 = cost.shape
    mu = np.ones(n0)                     # uniform histogram * mu_cardinality
    nu = np.full(n1, n0 / n1)            # uniform histogram * mu_cardinality (the release scales both by n0)
    return torch.from_numpy(ot.emd(mu, nu, cost.numpy()))


class Recorder:
    """Input (first argument) and output of every module that holds parameters, on one forward of `batch`;
    `order` is the order the modules first ran in."""

    def __init__(self, model: nn.Module, batch: dict):
        self.model, self.batch = model, batch
        self.modules = {n: m for n, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))}
        self.order: list[str] = []

    @torch.no_grad()
    def record(self) -> dict[str, dict[str, torch.Tensor]]:
        acts: dict[str, dict[str, torch.Tensor]] = {}
        order: list[str] = []

        def hook(name):
            def fn(module, inputs, output):
                x = inputs[0] if isinstance(inputs, tuple) and inputs else inputs
                y = output[0] if isinstance(output, tuple) else output
                if name not in acts:
                    order.append(name)
                acts[name] = {"input": x.detach() if torch.is_tensor(x) else None, "output": y.detach()}
            return fn

        handles = [m.register_forward_hook(hook(n)) for n, m in self.modules.items()]
        was_training = self.model.training
        try:
            self.model.eval()
            self.model(**self.batch, use_cache=False)
        finally:
            for h in handles:
                h.remove()
            self.model.train(was_training)
        self.order = order
        return acts


def skipped(model: nn.Module) -> tuple[set[str], set[str]]:
    """(skip_in, skip_out) as the fuse script's lists: embeddings on both sides, the output projection on its
    output side (and its input side too when it is the tied token embedding, which the release never visits)."""
    names = {m: n for n, m in model.named_modules()}
    embeddings = {n for n, m in model.named_modules() if isinstance(m, nn.Embedding)}
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    skip_in, skip_out = set(embeddings), set(embeddings)
    if head is not None and head in names:
        skip_out.add(names[head])
        if any(head.weight is m.weight for m in model.modules() if isinstance(m, nn.Embedding)):
            skip_in.add(names[head])
    return skip_in, skip_out


def relative_change(a: torch.Tensor, b: torch.Tensor) -> float:
    """utils.p_dis without args: sum |a - b| / (sum |a| + sum |b|)."""
    return float((a - b).abs().sum() / (a.abs().sum() + b.abs().sum()).clamp(min=1e-30))


@torch.no_grad()
def fuse_release(model0: nn.Module, model1: nn.Module, batch: dict, p0: float, progress=None,
                 input_first: bool = False) -> tuple[dict, nn.Module, dict]:
    """Align a copy of model0 to model1 and average them (the release's `adaptive_fuse_model2`). Returns the fused
    state dict (model1's keys), the aligned copy of model0, and facts: the transport plans (`plans`: module ->
    {"input", "output"} permutation as an index list), seconds per module, the number of recomputes.

    `input_first` (not the release): apply a weight's input-side plan and recompute before its output-side plan is
    taken, so that T_out compares the module's outputs with its input already aligned. The release takes both
    plans from the same activations, before either is applied."""
    aligned = copy.deepcopy(model0)
    rec0, rec1 = Recorder(aligned, batch), Recorder(model1, batch)
    origin0, acts1 = rec0.record(), rec1.record()
    current0 = origin0
    skip_in, skip_out = skipped(aligned)
    plans: dict[str, dict[str, torch.Tensor]] = {}
    seconds: dict[str, float] = {}
    recomputes = 0
    for name in rec0.order:
        if name in skip_in and name in skip_out:
            continue
        start = time.perf_counter()
        module = dict(aligned.named_modules())[name]
        for pname, param in list(module.named_parameters(recurse=False)):
            plan = plans.setdefault(name, {})
            if name not in skip_in and param.ndim != 1 and "input" not in plan and origin0[name]["input"] is not None:
                plan["input"] = transport(origin0[name]["input"], current0[name]["input"])
            new = param.detach().double()
            if param.ndim != 1 and plan.get("input") is not None:
                new = new @ plan["input"]
            if input_first and relative_change(new.to(param.dtype), param.detach()) > 1e-6:
                param.copy_(new.to(param.dtype))   # the output side then reads the input-aligned module
                current0 = rec0.record()
                recomputes += 1
            if name not in skip_out and "output" not in plan:
                plan["output"] = transport(current0[name]["output"], acts1[name]["output"])
            if plan.get("output") is not None:
                new = (plan["output"].T @ new.reshape(param.shape[0], -1)).reshape(param.shape)
            new = new.to(param.dtype)
            if relative_change(new, param.detach()) > 1e-6:
                param.copy_(new)
                current0 = rec0.record()
                recomputes += 1
        seconds[name] = time.perf_counter() - start
        if progress is not None:
            progress(name)
    fused = average(aligned, model1, p0)
    facts = {"plans": {n: {side: t.argmax(1).tolist() for side, t in p.items()} for n, p in plans.items()},
             "seconds_per_module": seconds, "recomputes": recomputes}
    return fused, aligned, facts


def average(model0: nn.Module, model1: nn.Module, p0: float) -> dict:
    """Weight averaging: p0 * model0 + (1 - p0) * model1, the embeddings (and the output projection tied to them)
    from model1, as the release's fused model. Without alignment this is the vanilla-average ablation row."""
    skip_in, skip_out = skipped(model1)
    keep = skip_in & skip_out  # embeddings, and the output projection tied to them
    state0, state1 = model0.state_dict(), model1.state_dict()
    return {k: v.clone() if k.rsplit(".", 1)[0] in keep or not v.is_floating_point() else
            p0 * state0[k] + (1.0 - p0) * v for k, v in state1.items()}
