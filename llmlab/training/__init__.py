"""Training helpers shared by methods whose `prepare` trains the model (X-KDE, Reason-KE, ...).

- `sft(lm, examples, settings)`: supervised fine-tuning on prompt/answer pairs with TRL's
  SFTTrainer, loss on the answer (assistant turn) only.
- `orpo(lm, pairs, settings)`: ORPO preference optimization (TRL `trl.experimental.orpo`).
- `train_once(ctx, lm, name, inputs, train)` / `TrainedCheckpoint`: a trained checkpoint cached under llmlab.models.cache.cache_dir() by the
  signature of its data and settings, written atomically; a second run loads it instead of training.
- `plot_losses(...)`: the loss curves as a PNG for ctx.add_artifact.
"""

from llmlab.training.cache import TrainedCheckpoint, signature, train_once
from llmlab.training.plots import plot_losses
from llmlab.training.trainers import TrainSettings, orpo, sft

__all__ = ["TrainedCheckpoint", "TrainSettings", "orpo", "plot_losses", "sft", "signature", "train_once"]
