"""Noisy top-k gating and the load-balancing loss (Shazeer et al. 2017), as the MEO release computes them
(Shwai-He/MEO transformers/models/layers.py `noisy_top_k_gating`, `_prob_in_top_k`, `cv_squared`).

    clean  = x @ w_gate                               (w_gate, w_noise start at zero: the release's init)
    noisy  = clean + N(0, 1) * (softplus(x @ w_noise) + 0.01)      while training
    gates  = softmax over the k largest logits, scattered into E slots (0 elsewhere)
    loss   = 0.01 * (cv²(importance) + cv²(load))
             importance = Σ_rows gates;  load = Σ_rows P(expert e stays in the top k under fresh noise) while
             training with noise (the smooth estimator), else the count of rows routed to e
    cv²(v) = var(v) / (mean(v)² + 1e-10)   (torch's unbiased var, as the release; 0 for a single expert)

A row is what is routed: a token (token level), a sequence's mean hidden state (sequence level), or the
task description's embedding (task level).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

NOISE_EPSILON = 1e-2     # noisy_top_k_gating(noise_epsilon=1e-2)
BALANCE_COEF = 1e-2      # MoE.forward(loss_coef=1e-2)


def cv_squared(v: torch.Tensor) -> torch.Tensor:
    if v.shape[0] == 1:
        return v.new_zeros(())
    v = v.float()
    return v.var() / (v.mean() ** 2 + 1e-10)


def noisy_top_k(x: torch.Tensor, w_gate: torch.Tensor, w_noise: torch.Tensor, k: int, noisy: bool
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(gates [rows, E] with k non-zeros per row summing to 1, load [E]) for routing rows `x` [rows, d]."""
    n_experts = w_gate.shape[1]
    clean = x @ w_gate
    if noisy:
        stddev = F.softplus(x @ w_noise) + NOISE_EPSILON
        logits = clean + torch.randn_like(clean) * stddev
    else:
        logits = clean
    top_logits, top_index = logits.topk(min(k + 1, n_experts), dim=-1)
    top_k_gates = torch.softmax(top_logits[:, :k], dim=-1)
    gates = torch.zeros_like(logits).scatter(1, top_index[:, :k], top_k_gates)
    if noisy and k < n_experts:
        load = _prob_in_top_k(clean, logits, stddev, top_logits, k).sum(0)
    else:
        load = (gates > 0).sum(0).to(gates.dtype)
    return gates, load


def _prob_in_top_k(clean: torch.Tensor, noisy: torch.Tensor, stddev: torch.Tensor, top_logits: torch.Tensor,
                   k: int) -> torch.Tensor:
    """P(each logit would be in the top k under a fresh draw of its own noise, the others' kept): the
    threshold is the (k+1)-th noisy logit for experts in the top k, the k-th for the others."""
    normal = torch.distributions.Normal(torch.zeros((), device=clean.device), torch.ones((), device=clean.device))
    threshold_in = top_logits[:, k:k + 1]
    threshold_out = top_logits[:, k - 1:k]
    is_in = noisy > threshold_in
    prob_in = normal.cdf((clean - threshold_in) / stddev)
    prob_out = normal.cdf((clean - threshold_out) / stddev)
    return torch.where(is_in, prob_in, prob_out)


def balance_loss(gates: torch.Tensor, load: torch.Tensor, coef: float = BALANCE_COEF) -> torch.Tensor:
    return coef * (cv_squared(gates.sum(0)) + cv_squared(load))
