"""A transformers TrainerCallback that sends a Trainer's (or a TRL trainer's) per-step logs to the
run: `ctx.log_step` (train_log.csv and W&B) and a progress bar."""

from __future__ import annotations

from transformers import TrainerCallback


class StepLogger(TrainerCallback):
    def __init__(self, ctx, stage: str):
        self.ctx, self.stage = ctx, stage

    def on_log(self, args, state, control, logs=None, **kwargs):
        numbers = {k: v for k, v in (logs or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if numbers and self.ctx is not None:
            self.ctx.log_step(self.stage, state.global_step, numbers)
