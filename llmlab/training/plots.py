"""Loss curves of one or more training stages, as a PNG."""

from __future__ import annotations

from pathlib import Path


def loss_points(history: list[dict], key: str = "loss") -> tuple[list[float], list[float]]:
    """(steps, losses) of a Trainer log history (entries with `key` and `step`)."""
    points = [(h["step"], h[key]) for h in history if key in h and "step" in h]
    return [p[0] for p in points], [p[1] for p in points]


def plot_losses(stages: dict[str, list[dict]], path: Path, title: str = "training loss") -> Path | None:
    """One panel per stage (name -> Trainer log history). Returns the path, or None if no points."""
    stages = {name: h for name, h in stages.items() if loss_points(h)[0]}
    if not stages:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(stages), figsize=(4.5 * len(stages), 3.2), squeeze=False)
    for ax, (name, history) in zip(axes[0], stages.items()):
        steps, losses = loss_points(history)
        ax.plot(steps, losses, marker="." if len(steps) < 40 else None)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
