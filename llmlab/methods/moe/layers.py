"""The routed linear maps that replace an encoder's feed-forward projections (MEO release,
Shwai-He/MEO transformers/models/layers.py `MoE`, `MEO`, `TokenAtt`; He et al., EMNLP 2023).

Each layer holds E bias-free experts W_e [out, in] (one tensor [E, out, in]) and a noisy top-k gate
(llmlab.methods.moe.gating). What is routed depends on the level:

    level     routed row                                   MoE (vanilla)                 MEO
    sequence  the sequence's mean hidden state             k matmuls per sequence        one matmul with Σ g_e W_e
    task      the task description's embedding             k matmuls per sequence        one matmul with Σ g_e W_e
    token     each token (MoE); MEO: the sequence mean     k matmuls per token           x + TokenAtt(x), then one
              after the token-attention block                                            matmul with Σ g_e W_e

With linear experts, Σ g_e (W_e x) = (Σ g_e W_e) x: at sequence and task level MoE and MEO compute the same
function with the same gate and differ only in cost (k matmuls against one, plus the merge). At token level
they differ in function too: MoE routes each token, MEO merges once per sequence on features that the token
attention block (a bottleneck down-ReLU-up, added to x) has mixed per token, as the release does.

Quirks of the release kept: the sequence mean runs over every position, padding included (the release does
not pass the attention mask to the gate); the task level embeds the task description's tokens with a fresh
embedding table (`BertEmbeddings.task_embeddings`, description_size 128) and projects them by a per-layer
`task_proj` to 128 / reduce_factor dimensions (MoE 16, MEO 64) before the mean; the token-attention block's
down projection is 1/64 of the width.

The balance loss of the last forward is kept in `aux_loss` (training only); the fine-tuning loop adds every
module's `aux_loss` to the task loss, as the release adds `moe_loss` to the classification loss.
"""

from __future__ import annotations

import torch
from torch import nn

from llmlab.methods.moe.gating import balance_loss, noisy_top_k

LEVELS = ("sequence", "task", "token")


class TaskEmbedding(nn.Module):
    """The task description's tokens in a fresh embedding table (BertEmbeddings.task_embeddings): shared by
    every routed layer, each of which projects and averages them (`task_proj`, then mean over tokens)."""

    def __init__(self, description_ids: list[int], vocab_size: int, size: int = 128):
        super().__init__()
        self.table = nn.Embedding(vocab_size, size)
        self.register_buffer("ids", torch.tensor(description_ids, dtype=torch.long), persistent=True)

    def forward(self) -> torch.Tensor:
        return self.table(self.ids)  # [tokens, size]


class TokenAttention(nn.Module):
    """The MEO release's `TokenAtt`: up(ReLU(down(x))), added to x before the merged expert."""

    def __init__(self, dim: int, reduce_factor: int = 64):
        super().__init__()
        self.down_proj = nn.Linear(dim, max(1, dim // reduce_factor))
        self.up_proj = nn.Linear(max(1, dim // reduce_factor), dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up_proj(torch.relu(self.down_proj(x)))


class RoutedLinear(nn.Module):
    """E bias-free experts and their gate; subclasses say how the selected experts are applied."""

    merges: bool = False

    def __init__(self, weight: torch.Tensor, n_experts: int, k: int, level: str, task: TaskEmbedding | None = None,
                 reduce_factor: int = 16, noisy: bool = True, bias: torch.Tensor | None = None):
        super().__init__()
        if level not in LEVELS:
            raise ValueError(f"level={level!r}; one of {LEVELS}")
        if not 1 <= k <= n_experts:
            raise ValueError(f"k={k} must be between 1 and n_experts={n_experts}")
        out_features, in_features = weight.shape
        self.in_features, self.out_features = in_features, out_features
        self.n_experts, self.k, self.level, self.noisy = n_experts, k, level, noisy
        # every expert starts as the pre-trained projection, bias dropped (the release's load_MoE / load_MEO); with
        # `bias` each expert also gets the pre-trained bias (the release's layers take bias=True, its models pass False)
        self.weight = nn.Parameter(weight.detach().clone().unsqueeze(0).repeat(n_experts, 1, 1))
        self.bias = nn.Parameter(bias.detach().clone().unsqueeze(0).repeat(n_experts, 1)) if bias is not None else None
        if level == "task":
            if task is None:
                raise ValueError("level=task needs the task description's embedding")
            self._task = [task]  # shared, owned (and registered) by the model, not by this layer
            gate_in = task.table.embedding_dim // reduce_factor
            self.task_proj = nn.Linear(task.table.embedding_dim, gate_in)
        else:
            gate_in = in_features
        self.w_gate = nn.Parameter(torch.zeros(gate_in, n_experts))
        self.w_noise = nn.Parameter(torch.zeros(gate_in, n_experts))
        self.aux_loss: torch.Tensor | None = None
        self.last_gates: torch.Tensor | None = None

    def extra_repr(self) -> str:
        return (f"in={self.in_features}, out={self.out_features}, experts={self.n_experts}, k={self.k}, "
                f"level={self.level}")

    def route_rows(self, x: torch.Tensor) -> torch.Tensor:
        """What the gate sees: [B, d] per sequence, or [B*T, d] per token (vanilla MoE at token level)."""
        if self.level == "task":
            per_token = self.task_proj(self._task[0]())          # [tokens, gate_in]
            return per_token.mean(0).expand(x.shape[0], -1)       # the same row for every sequence
        if self.level == "token" and not self.merges:
            return x.reshape(-1, self.in_features)
        return x.mean(-2)

    def gate(self, rows: torch.Tensor) -> torch.Tensor:
        gates, load = noisy_top_k(rows, self.w_gate, self.w_noise, self.k, self.noisy and self.training)
        self.aux_loss = balance_loss(gates, load) if self.training else None
        self.last_gates = gates.detach()
        return gates


class MoELinear(RoutedLinear):
    """Vanilla MoE: each routed row goes through its k selected experts, outputs weighted by the gates."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape[:-1]
        gates = self.gate(self.route_rows(x))
        rows = x.reshape(-1, self.in_features) if self.level == "token" else x   # [units, (T,) in]
        out = rows.new_zeros(rows.shape[:-1] + (self.out_features,))
        for e in range(self.n_experts):   # the release's SparseDispatcher: each expert sees only its rows
            units = gates[:, e].nonzero().squeeze(-1)
            if units.numel() == 0:
                continue
            g = gates[units, e].to(rows.dtype).view(-1, *([1] * (rows.dim() - 1)))
            y = rows[units] @ self.weight[e].T
            out = out.index_add(0, units, g * (y + self.bias[e] if self.bias is not None else y))
        return out.reshape(*shape, self.out_features)


class MEOLinear(RoutedLinear):
    """MEO: the selected experts' weights merged by their gates, then one matmul per sequence."""

    merges = True

    def __init__(self, weight: torch.Tensor, n_experts: int, k: int, level: str, task: TaskEmbedding | None = None,
                 reduce_factor: int = 64, noisy: bool = True, bias: torch.Tensor | None = None,
                 token_reduce_factor: int = 64):
        super().__init__(weight, n_experts, k, level, task, reduce_factor, noisy, bias)
        if level == "token":
            self.token_attention = TokenAttention(self.in_features, token_reduce_factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.level == "token":
            x = x + self.token_attention(x)
        gates = self.gate(self.route_rows(x))                           # [B, E]
        if 2 * self.k < self.n_experts:   # the release gathers the k selected experts when they are few
            top, index = gates.topk(self.k, dim=-1)                     # [B, k]
            merged = torch.einsum("bk,bkoi->boi", top.to(x.dtype), self.weight[index])
        else:
            merged = torch.einsum("be,eoi->boi", gates.to(x.dtype), self.weight)
        y = torch.einsum("bti,boi->bto", x, merged)
        if self.bias is not None:  # the release's MEO: expert_bias = Σ g_e b_e, added per sequence
            y = y + (gates.to(x.dtype) @ self.bias).unsqueeze(1)
        return y
