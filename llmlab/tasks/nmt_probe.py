"""What PTvsRI's NMT task and its two probes (lexical entropy, loss landscape) share: the file checks before any
model loads, the `Probe` base (one parallel file pair, an encoder-decoder), and a bar plot beside results."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llmlab.errors import UserError
from llmlab.models.nmt import require_seq2seq
from llmlab.tasks.base import Task


def require_files(task: str, files: dict) -> None:
    """Every {what: path} exists, or one paragraph naming the first that does not."""
    for what, path in files.items():
        if not path or not Path(str(path)).is_file():
            raise UserError(f"task {task}: the {what} file {path!r} does not exist; give task.{what} (one sentence "
                            f"per line).")


def bar_plot(ctx, name: str, labels: list[str], values: list[float], xlabel: str, ylabel: str, title: str,
             color: str = "tab:blue") -> None:
    """`<name>.png` beside results.json (and mirrored to W&B)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.bar(labels, values, color=color)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = ctx.path(f"{name}.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    ctx.add_artifact(path)


@dataclass
class Probe(Task):
    """A probe of an encoder-decoder on one parallel file pair (teacher forcing): `source`, `reference`."""

    src: str = "en"
    tgt: str = "de"
    source: str | None = None
    reference: str | None = None

    def check_model(self, spec: dict) -> None:
        super().check_model(spec)
        require_seq2seq(f"task {self.name}", spec)

    def check_data(self) -> None:
        require_files(self.name, {"source": self.source, "reference": self.reference})
