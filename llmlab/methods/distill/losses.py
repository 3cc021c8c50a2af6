"""Token-level distillation objectives of the ATKD release (WHU-ZQH/ATKD distill/distill_trainer.py).

Every function takes student and teacher logits (B, T, V) already aligned with their targets (the
release drops the last position and the first target: `logits[..., :-1, :]`, `target[..., 1:]`),
the gold token ids (B, T) and `ignore` (B, T), True where a position does not count (prompt or pad:
the release's `output_mask` / `padding_mask`). A mean is over the counted positions, the sum over the
vocabulary inside each position, as `get_kl` does.

Notation (DKD, Zhao et al. 2022): b = [p_gold, 1 - p_gold], the binary split of a distribution at
the gold token; p^ = the distribution over the non-gold tokens, renormalised.
    TCKD = KL(b_teacher || b_student)        (target-oriented part)
    NCKD = KL(p^_teacher || p^_student)      (diversity-oriented part)
    KL(teacher || student) = TCKD + UnC * NCKD,  UnC = 1 - p_gold(teacher)  (per token)
ATKD and DKD use `decomposition_fused`: the same values, with the gradient to the student's logits in closed form
(the release lets autograd run through both log-softmaxes).
Deviations from the release, each following the paper:
- TVD: the release's `get_tvd` selects the positions where `padding_mask` is True (the ignored
  ones); here it averages over the counted positions.
- DKD: the release calls `dkd_loss` with its arguments shifted (it cannot run); here it is
  alpha * TCKD + beta * NCKD with the release's alpha = 0.2, beta = 1.0 (distill/train.py).
- "jsd" is the release's mixture 0.9 * forward KL + 0.1 * reverse KL (`fwd_loss_ratio = 0.9`), not
  the Jensen-Shannon divergence; it keeps the release's name and meaning.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

ALPHA = 0.2  # distill/train.py: alpha (ATKD's weight of the easy tokens; DKD's TCKD weight)
BETA = 1.0   # distill/train.py: beta (DKD's NCKD weight)
JSD_FORWARD_RATIO = 0.9  # distill_trainer.py training_step: fwd_loss_ratio


def _mean(per_token: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """Sum over the counted positions / their number (0 when none)."""
    n = count.sum()
    return (per_token * count).sum() / n.clamp(min=1)


def _kl(target_logits: torch.Tensor, input_logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax(target) || softmax(input)) per position: (B, T)."""
    t = F.log_softmax(target_logits.float(), dim=-1)
    s = F.log_softmax(input_logits.float(), dim=-1)
    return (t.exp() * (t - s)).sum(-1)


def forward_kl(student, teacher, gold, ignore):
    """KL(teacher || student): `get_kl(student, teacher)`."""
    return _mean(_kl(teacher, student), ~ignore)


def reverse_kl(student, teacher, gold, ignore):
    """KL(student || teacher): `get_kl(teacher, student)`."""
    return _mean(_kl(student, teacher), ~ignore)


def jsd(student, teacher, gold, ignore):
    """The release's "jsd": 0.9 forward + 0.1 reverse KL."""
    return JSD_FORWARD_RATIO * forward_kl(student, teacher, gold, ignore) + \
        (1 - JSD_FORWARD_RATIO) * reverse_kl(student, teacher, gold, ignore)


def tvd(student, teacher, gold, ignore):
    """Total variation: 0.5 * sum |p_s - p_t| per position, mean over the counted positions."""
    per = 0.5 * (F.softmax(student.float(), -1) - F.softmax(teacher.float(), -1)).abs().sum(-1)
    return _mean(per, ~ignore)


def _masked_parts(student, teacher, gold):
    """What both forms of the decomposition read: log p^ of each model (the log-softmax of its logits with the
    gold entry masked), and each model's log p_gold and log o (the non-gold mass), per position."""
    s, t = student.float(), teacher.float()
    g = gold.unsqueeze(-1)
    low = torch.finfo(torch.float32).min / 4
    ms, mt = s.scatter(-1, g, low), t.scatter(-1, g, low)
    lps, lpt = F.log_softmax(ms, -1), F.log_softmax(mt, -1)
    other = (g + 1) % s.shape[-1]                            # any non-gold entry gives logsumexp(masked) back
    lse_ms = (ms.gather(-1, other) - lps.gather(-1, other)).squeeze(-1)
    lse_mt = (mt.gather(-1, other) - lpt.gather(-1, other)).squeeze(-1)
    del ms, mt
    s_g, t_g = s.gather(-1, g).squeeze(-1), t.gather(-1, g).squeeze(-1)
    lse_s, lse_t = torch.logaddexp(lse_ms, s_g), torch.logaddexp(lse_mt, t_g)
    return lps, lpt, s_g - lse_s, t_g - lse_t, lse_ms - lse_s, lse_mt - lse_t


def decomposition(student, teacher, gold):
    """Per position (B, T): TCKD, NCKD and the teacher's uncertainty UnC = 1 - p_gold(teacher).

    One log-softmax per model, on the logits with the gold entry masked out: for each model, log p^ =
    log_softmax(masked) is the renormalised non-gold distribution itself, logsumexp(masked) is read back from any
    non-gold entry (masked_i - log p^_i), and log o = logsumexp(masked) - logsumexp(all) is the non-gold mass (never
    formed as 1 - p_gold, so confident tokens keep their precision: o_t = 1e-11 agrees with float64 to 1e-6), and
        NCKD = sum_i p^t_i (log p^t_i - log p^s_i)             (a forward KL on the masked logits)
        TCKD = pt_g (log pt_g - log ps_g) + o_t (log o_t - log o_s)
    The gold entry is masked with a large finite negative number, not -inf, so that it adds exactly 0 (and no NaN)
    to the sum and no gradient to the student's gold logit."""
    lps, lpt, ls_g, lt_g, lo_s, lo_t = _masked_parts(student, teacher, gold)
    o_t = lo_t.exp()
    return lt_g.exp() * (lt_g - ls_g) + o_t * (lo_t - lo_s), (lpt.exp() * (lpt - lps)).sum(-1), o_t


class _Decomposition(torch.autograd.Function):
    """`decomposition` with its gradient to the student's logits in closed form (one pass in backward instead of
    autograd through the masked copies and both log-softmaxes). With p^ the renormalised non-gold distributions,
    o the non-gold mass and g the gold index, for a token with upstream gradients (gt, gn) of (TCKD, NCKD):
        d/ds_i = p^s_i * (gn + gt * (o_s - o_t)) - gn * p^t_i     (i != g)
        d/ds_g = gt * (ps_g - pt_g)
    (NCKD's gradient is p^s - p^t on the non-gold entries; TCKD's is p_s - b_t spread over the two groups.)"""

    @staticmethod
    def forward(ctx, student, teacher, gold):
        lps, lpt, ls_g, lt_g, lo_s, lo_t = _masked_parts(student, teacher, gold)
        pt_hat = lpt.exp()
        nckd = (pt_hat * (lpt - lps)).sum(-1)
        del lpt
        o_t = lo_t.exp()
        tckd = lt_g.exp() * (lt_g - ls_g) + o_t * (lo_t - lo_s)
        ps_hat = lps.exp_()   # lps is not needed any more: its storage holds p^s
        ctx.save_for_backward(ps_hat, pt_hat, gold, ls_g.exp(), lt_g.exp(), lo_s.exp(), o_t)
        ctx.student_dtype = student.dtype
        ctx.mark_non_differentiable(o_t)
        return tckd, nckd, o_t

    @staticmethod
    def backward(ctx, grad_tckd, grad_nckd, _grad_unc):
        ps_hat, pt_hat, gold, ps_g, pt_g, o_s, o_t = ctx.saved_tensors
        gt = grad_tckd if grad_tckd is not None else torch.zeros_like(o_t)
        gn = grad_nckd if grad_nckd is not None else torch.zeros_like(o_t)
        grad = ps_hat * (gn + gt * (o_s - o_t)).unsqueeze(-1)
        grad -= pt_hat * gn.unsqueeze(-1)
        grad.scatter_(-1, gold.unsqueeze(-1), (gt * (ps_g - pt_g)).unsqueeze(-1))
        return grad.to(ctx.student_dtype), None, None


def decomposition_fused(student, teacher, gold):
    """`decomposition` (same values) with a closed-form gradient to the student; the teacher gets none."""
    return _Decomposition.apply(student, teacher.detach(), gold)


def uncertainty(teacher, gold) -> torch.Tensor:
    """UnC = 1 - p_gold of the teacher per position (B, T)."""
    t = teacher.float()
    return 1 - (t.gather(-1, gold.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(t, -1)).exp()


def dkd(student, teacher, gold, ignore, alpha: float = ALPHA, beta: float = BETA):
    """Decoupled KD: alpha * mean TCKD + beta * mean NCKD."""
    tckd, nckd, _ = decomposition_fused(student, teacher, gold)
    return alpha * _mean(tckd, ~ignore) + beta * _mean(nckd, ~ignore)


def easy_hard_split(uncertainty: torch.Tensor, ignore: torch.Tensor) -> torch.Tensor:
    """True where a token is easy: its uncertainty is strictly below the median over the batch's
    counted tokens, the median as torch.median takes it (the lower middle value for an even count),
    as the release's `pnt_tea < masked_select(pnt_tea, ~padding_mask).median()`. Ties with the
    median are hard."""
    median = uncertainty[~ignore].median()
    return uncertainty < median


def atkd(student, teacher, gold, ignore, alpha: float = ALPHA, reverse: bool = False):
    """ATKD as released: alpha * mean_easy(NCKD) + (1 - alpha) * (mean_hard(TCKD) + mean_hard(NCKD)),
    each mean over its own group's counted tokens, NCKD without the UnC factor.

    `reverse` (the release's `--setting reverse`): the two models swap places in every term (the
    divergences run from the student to the teacher), and the split still uses the TEACHER's
    uncertainty: after the swap the release splits on `pnt_stu`, which is then the teacher's."""
    if reverse:
        tckd, nckd, _ = decomposition(teacher, student, gold)
        unc = uncertainty(teacher.detach(), gold)
    else:
        tckd, nckd, unc = decomposition_fused(student, teacher, gold)
    easy = easy_hard_split(unc.detach(), ignore)
    counted = ~ignore
    easy_loss = _mean(nckd, counted & easy)
    hard_loss = _mean(tckd, counted & ~easy) + _mean(nckd, counted & ~easy)
    return alpha * easy_loss + (1 - alpha) * hard_loss


OBJECTIVES = {"forward": forward_kl, "reverse": reverse_kl, "jsd": jsd, "tvd": tvd, "dkd": dkd}
