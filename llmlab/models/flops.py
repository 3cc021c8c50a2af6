"""Forward FLOPs counted on the real forward pass (torch.utils.flop_counter.FlopCounterMode), not estimated.

torch counts 2 FLOPs per multiply-add of matmuls, convolutions and attention; element-wise work (activations,
norms, softmax) is not counted. Tools that count multiply-adds (thop, fvcore: "one FMA = one flop") give half.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def forward_flops(model: torch.nn.Module, inputs: dict) -> int:
    """FLOPs of one `model(**inputs)` in eval mode (the model's mode is restored)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter:
            model(**inputs)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())
