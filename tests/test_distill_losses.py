"""ATKD and the KD objectives it improves: the decomposition KL = TCKD + UnC * NCKD, and ATKD equal to
the released formula computed by hand on a small example (median split as torch.median takes it)."""

from __future__ import annotations

import math

import torch

from llmlab.methods.distill import losses


def test_kl_is_tckd_plus_uncertainty_times_nckd_per_token():
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(3, 7, 50, generator=g) * 3, torch.randn(3, 7, 50, generator=g) * 3
    gold = torch.randint(0, 50, (3, 7), generator=g)
    tckd, nckd, unc = losses.decomposition(student, teacher, gold)
    kl = losses._kl(teacher, student)
    assert torch.allclose(kl, tckd + unc * nckd, atol=1e-5)
    ignore = torch.zeros(3, 7, dtype=torch.bool)
    assert torch.allclose(losses.forward_kl(student, teacher, gold, ignore), kl.mean(), atol=1e-6)


def _softmax(xs):
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [v / sum(e) for v in e]


def _by_hand(student, teacher, gold, counted, alpha):
    """The released ATKD written out token by token with math (no torch)."""
    rows = []
    for s, t, y, c in zip(student, teacher, gold, counted):
        ps, pt = _softmax(s), _softmax(t)
        tckd = pt[y] * math.log(pt[y] / ps[y]) + (1 - pt[y]) * math.log((1 - pt[y]) / (1 - ps[y]))
        others = [i for i in range(len(s)) if i != y]
        qs, qt = _softmax([s[i] for i in others]), _softmax([t[i] for i in others])
        nckd = sum(b * math.log(b / a) for a, b in zip(qs, qt))
        rows.append((1 - pt[y], tckd, nckd, c))
    unc = sorted(u for u, _, _, c in rows if c)
    median = unc[(len(unc) - 1) // 2]  # torch.median: the lower middle value of an even count
    easy = [r for r in rows if r[3] and r[0] < median]
    hard = [r for r in rows if r[3] and r[0] >= median]
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    return alpha * mean([n for _, _, n, _ in easy]) + (1 - alpha) * (mean([t for _, t, _, _ in hard]) +
                                                                      mean([n for _, _, n, _ in hard]))


def test_atkd_equals_the_released_formula_by_hand():
    # 5 positions, vocabulary 4; position 4 is a pad (ignored) with the lowest uncertainty of all
    student = [[0.2, 1.0, -0.5, 0.3], [1.5, 0.1, 0.0, -1.0], [0.0, 0.0, 2.0, 0.5], [-0.3, 0.8, 0.8, 0.1],
               [0.0, 0.0, 0.0, 0.0]]
    teacher = [[2.0, 0.5, -1.0, 0.0], [0.3, 0.2, 0.1, 0.0], [0.1, -0.2, 3.0, 0.4], [0.5, 1.5, 0.2, -0.5],
               [9.0, 0.0, 0.0, 0.0]]
    gold = [0, 1, 2, 1, 0]
    counted = [True, True, True, True, False]
    got = losses.atkd(torch.tensor([student]), torch.tensor([teacher]), torch.tensor([gold]),
                      torch.tensor([[not c for c in counted]]), alpha=0.2)
    assert abs(got.item() - _by_hand(student, teacher, gold, counted, 0.2)) < 1e-5
    # the split: 4 counted tokens, the median is the 2nd smallest uncertainty; the pad does not count
    _, _, unc = losses.decomposition(torch.tensor([student]), torch.tensor([teacher]), torch.tensor([gold]))
    easy = losses.easy_hard_split(unc, torch.tensor([[not c for c in counted]]))[0, :4]
    order = sorted(range(4), key=lambda i: unc[0, i].item())
    assert easy.tolist() == [i == order[0] for i in range(4)]


def test_atkd_reverse_swaps_the_divergences_but_splits_on_the_teacher():
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(2, 6, 20, generator=g), torch.randn(2, 6, 20, generator=g)
    gold, ignore = torch.randint(0, 20, (2, 6), generator=g), torch.zeros(2, 6, dtype=torch.bool)
    tckd, nckd, _ = losses.decomposition(t, s, gold)  # KL(student parts || teacher parts)
    _, _, teacher_unc = losses.decomposition(s, t, gold)
    easy = losses.easy_hard_split(teacher_unc, ignore)
    expected = 0.2 * nckd[easy].mean() + 0.8 * (tckd[~easy].mean() + nckd[~easy].mean())
    assert torch.allclose(losses.atkd(s, t, gold, ignore, reverse=True), expected, atol=1e-6)


def test_tvd_counts_the_real_tokens_not_the_pads():
    s, t = torch.zeros(1, 2, 3), torch.tensor([[[0.0, 0.0, 0.0], [5.0, 0.0, 0.0]]])
    ignore = torch.tensor([[False, True]])
    assert losses.tvd(s, t, torch.zeros(1, 2, dtype=torch.long), ignore).item() == 0.0


def test_the_closed_form_gradient_equals_autograd_through_the_decomposition():
    g = torch.Generator().manual_seed(3)
    s, t = torch.randn(2, 5, 40, generator=g) * 3, torch.randn(2, 5, 40, generator=g) * 3
    gold = torch.randint(0, 40, (2, 5), generator=g)
    t[0, 0], t[0, 0, gold[0, 0]] = -20.0, 20.0    # a confident teacher token: o_t ~ 1e-17
    w_t, w_n = torch.randn(2, 5, generator=g), torch.randn(2, 5, generator=g)
    grads, values = [], []
    for fn in (losses.decomposition, losses.decomposition_fused):
        x = s.clone().requires_grad_(True)
        tckd, nckd, unc = fn(x, t, gold)
        ((tckd * w_t).sum() + (nckd * w_n).sum()).backward()
        grads.append(x.grad)
        values.append(torch.stack([tckd, nckd, unc]).detach())
    assert torch.equal(values[0], values[1])
    assert torch.allclose(grads[0], grads[1], atol=1e-5)
    assert grads[0].abs().max() > 0.1   # a gradient that could differ
