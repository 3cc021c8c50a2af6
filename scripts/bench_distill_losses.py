"""Cost of each distillation objective against forward KL (forward + backward), at a 49k vocabulary.

    python scripts/bench_distill_losses.py [batch] [tokens] [vocab]     # default 2 128 49152"""

from __future__ import annotations

import sys
import time

import torch

from llmlab.methods.distill import losses


def timed(fn, student, teacher, gold, ignore, repeats=5):
    best = float("inf")
    for _ in range(repeats):
        s = student.clone().requires_grad_(True)
        start = time.perf_counter()
        fn(s, teacher, gold, ignore).backward()
        best = min(best, time.perf_counter() - start)
    return best


if __name__ == "__main__":
    b, t, v = (int(x) for x in (sys.argv[1:] + ["2", "128", "49152"][len(sys.argv) - 1:])[:3])
    torch.manual_seed(0)
    student, teacher = torch.randn(b, t, v), torch.randn(b, t, v)
    gold, ignore = torch.randint(0, v, (b, t)), torch.zeros(b, t, dtype=torch.bool)
    ignore[:, : t // 4] = True  # a prompt that does not count
    base = timed(losses.forward_kl, student, teacher, gold, ignore)
    print(f"batch {b} x {t} tokens, vocabulary {v}, torch threads {torch.get_num_threads()}")
    for name, fn in [("forward", losses.forward_kl), ("reverse", losses.reverse_kl), ("jsd", losses.jsd),
                     ("tvd", losses.tvd), ("dkd", losses.dkd), ("atkd", losses.atkd)]:
        sec = timed(fn, student, teacher, gold, ignore)
        print(f"{name:8s} {sec * 1000:8.1f} ms  {sec / base:5.2f}x forward KL")
