"""Which process this is, when a job runs under `accelerate launch` or `torchrun` (paper scale).

Every process loads the model on its own GPU and takes part in `method.prepare` (TRL's trainers
shard the training across processes); only the main process (rank 0) then evaluates, writes
results and logs to W&B, so a multi-GPU job records one result, exactly as a single-GPU one.
The launchers set RANK, LOCAL_RANK and WORLD_SIZE; without them this is process 0 of 1.
"""

from __future__ import annotations

import os


def rank() -> int:
    return int(os.environ.get("RANK", "0") or 0)


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0") or 0)


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def is_main() -> bool:
    return rank() == 0


def device_for(device: str) -> str:
    """A bare "cuda" becomes this process's GPU ("cuda:<LOCAL_RANK>") when several processes run."""
    if device == "cuda" and world_size() > 1:
        return f"cuda:{local_rank()}"
    return device
