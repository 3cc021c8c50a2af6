"""Activation capture: module inputs/outputs at chosen positions, second moments of inputs, and the
inputs of the first block (to run a model block by block, as layer-wise pruning does).

- `io_at(lm, module, rows)`: a module's input and output at one position of each token row
  (ROME/MEMIT keys and values).
- `SecondMoment`: running Σ x xᵀ (float64) and Σ x² per input feature over the tokens seen, with
  token and sample counts: ROME's key covariance, SparseGPT's Hessian (2/N · Σ x xᵀ) and Wanda's
  feature norms (‖X_j‖² / N) are all read from it.
- `collect_second_moments(lm, modules, rows)`: feed token rows through the model, accumulate a
  SecondMoment per module from its input (padding excluded), and stop the forward after the
  last module needed.
- `first_block_inputs(model, rows)`, `block_moments`, `propagate`: the hidden states and keyword arguments the first block receives
  for each batch (the "Catcher" of Wanda/SparseGPT), to run blocks one at a time.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterable

import torch
from torch import nn

from llmlab.batching import pad_id, padded
from llmlab.models import anatomy


class Stop(Exception):
    """Raised inside a hook to end a forward pass early (nothing above is needed)."""


def _tensor(output):
    return output[0] if isinstance(output, tuple) else output


@torch.no_grad()
def io_at(lm, module: nn.Module, rows: list[tuple[list[int], int]], batch_size: int = 32
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Input and output of `module` at position `pos` of each (ids, pos) row:
    ([n, d_in], [n, d_out]), float32."""
    ins, outs, captured = [], [], {}

    def hook(mod, args, output):
        captured["in"], captured["out"] = args[0], _tensor(output)

    handle = module.register_forward_hook(hook)
    try:
        for i in range(0, len(rows), batch_size):
            chunk = rows[i: i + batch_size]
            ids, mask, _ = padded([r[0] for r in chunk], pad_id(lm.tokenizer), lm.device)
            lm.model(input_ids=ids, attention_mask=mask, use_cache=False)
            at = torch.arange(len(chunk), device=ids.device), torch.tensor([r[1] for r in chunk], device=ids.device)
            ins.append(captured["in"][at].float())
            outs.append(captured["out"][at].float())
    finally:
        handle.remove()
    return torch.cat(ins), torch.cat(outs)


@dataclass
class SecondMoment:
    """Σ x xᵀ and Σ x² (per feature) over tokens, in float64, with token and sample counts."""

    dim: int
    device: torch.device | str = "cpu"
    outer: bool = True  # False: only the per-feature Σ x² (Wanda needs no d×d matrix)
    tokens: int = 0
    samples: int = 0
    sum_outer: torch.Tensor | None = field(default=None, repr=False)
    sum_sq: torch.Tensor | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.outer:
            self.sum_outer = torch.zeros(self.dim, self.dim, dtype=torch.float64, device=self.device)
        self.sum_sq = torch.zeros(self.dim, dtype=torch.float64, device=self.device)

    def add(self, x: torch.Tensor, samples: int = 1) -> None:
        """Add the tokens `x` [tokens, dim] (padding already removed) of `samples` sequences."""
        x = x.reshape(-1, self.dim).to(torch.float64)
        if self.outer:
            self.sum_outer.add_(x.T @ x)
        self.sum_sq.add_((x * x).sum(0))
        self.tokens += x.shape[0]
        self.samples += samples

    def mean_outer(self) -> torch.Tensor:
        """E[x xᵀ] over tokens (ROME's uncentered key covariance)."""
        return self.sum_outer / max(self.tokens, 1)

    def inverse_hessian_cholesky(self, W: torch.Tensor, percdamp: float) -> torch.Tensor:
        """The upper Cholesky factor of H⁻¹ for H = 2/n Σ x xᵀ (n: samples), as SparseGPT's and GPTQ's code build
        it: a dead input (zero diagonal) gets H_ii = 1 and its weight column zeroed in `W` (in place), then
        `percdamp` x mean(diag H) is added to the diagonal."""
        H = (2.0 * self.sum_outer / max(self.samples, 1)).float()
        dead = torch.diag(H) == 0
        H[dead, dead] = 1
        W[:, dead] = 0
        H += percdamp * torch.mean(torch.diag(H)) * torch.eye(H.shape[0])
        return torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)


@contextmanager
def input_hooks(modules: dict, fn):
    """Call fn(key, input tensor) on every forward of each module; hooks removed on exit."""
    handles = [m.register_forward_pre_hook(lambda mod, args, key=key: fn(key, args[0])) for key, m in modules.items()]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def collect_second_moments(lm, modules: dict, rows: Iterable[list[int]], outer: bool = True,
                           tokens_per_batch: int = 4096, progress_desc: str | None = None) -> dict:
    """A SecondMoment of each module's input over the token rows (padding excluded). The forward
    stops after the deepest module (by registration order of `modules`: give them shallow to deep)."""
    from llmlab.progress import progress

    rows = sorted((r for r in rows if r), key=len)
    moments = {k: SecondMoment(m.in_features if isinstance(m, nn.Linear) else int(m.weight.shape[1]),
                               lm.device, outer) for k, m in modules.items()}
    last = list(modules)[-1]
    state = {}

    def take(key, x):
        moments[key].add(x[state["mask"]], samples=state["rows"])
        if key == last:
            raise Stop

    batches, cur = [], []
    for r in rows:  # batches of about `tokens_per_batch` tokens
        if cur and (len(cur) + 1) * len(r) > tokens_per_batch:
            batches.append(cur)
            cur = []
        cur.append(r)
    if cur:
        batches.append(cur)
    with input_hooks(modules, take):
        for batch in progress(batches, desc=progress_desc or "activations", unit="batch"):
            ids, mask, _ = padded(batch, pad_id(lm.tokenizer), lm.device)
            state["mask"], state["rows"] = mask.bool(), len(batch)
            try:
                lm.model(input_ids=ids, attention_mask=mask, use_cache=False)
            except Stop:
                pass
    return moments


@torch.no_grad()
def first_block_inputs(model: nn.Module, batches: list[torch.Tensor], attention_mask: list[torch.Tensor] | None = None
                       ) -> list[tuple[torch.Tensor, dict]]:
    """(hidden states, keyword arguments) that the first block of `model` receives for each batch of ids: the
    embeddings and the position/mask arguments the model computes once for all blocks (positional arguments after
    the hidden states are not kept: feed unpadded sequences to a model that passes its mask positionally, BERT)."""
    first = anatomy.blocks(model)[0]
    device = next(model.parameters()).device
    caught: list[tuple[torch.Tensor, dict]] = []

    def hook(mod, args, kwargs):
        hidden = args[0] if args else kwargs.pop("hidden_states")
        caught.append((hidden, dict(kwargs)))
        raise Stop

    handle = first.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        for i, ids in enumerate(batches):
            mask = attention_mask[i] if attention_mask is not None else None
            try:
                model(input_ids=ids.to(device), attention_mask=None if mask is None else mask.to(device),
                      use_cache=False)
            except Stop:
                pass
    finally:
        handle.remove()
    return caught


def block_output(out) -> torch.Tensor:
    """A block's hidden states, whether it returns them alone or first in a tuple."""
    return out[0] if isinstance(out, tuple) else out


@torch.no_grad()
def block_moments(block: nn.Module, modules: dict, inputs: list[tuple[torch.Tensor, dict]], outer: bool = True
                  ) -> dict:
    """A SecondMoment (on the CPU) of each module's input while `block` runs on `inputs` (first_block_inputs or
    `propagate`'s output), one sample per input: the statistics Wanda, SparseGPT and GPTQ calibrate with."""
    stats = {k: SecondMoment(int(m.in_features), "cpu", outer) for k, m in modules.items()}
    with input_hooks(modules, lambda key, x: stats[key].add(x.detach().to("cpu"), samples=1)):
        for hidden, kwargs in inputs:
            block(hidden, **kwargs)
    return stats


@torch.no_grad()
def propagate(block: nn.Module, inputs: list[tuple[torch.Tensor, dict]]) -> list[tuple[torch.Tensor, dict]]:
    """The next block's inputs: `block`'s outputs on `inputs` (after whatever was done to it)."""
    return [(block_output(block(hidden, **kwargs)), kwargs) for hidden, kwargs in inputs]
