"""The PTvsRI figures across the systems of one `ptvsri_wmt` run (the newest result per method and task):

    python scripts/plot_ptvsri.py [--outputs outputs] [--scale cpu]

- ptvsri_bleu.png: BLEU per test set (in domain, IT, medical, noisy) for every system;
- ptvsri_lexical_entropy.png: the share of target positions per 2-bit entropy bucket (analysis/lpd.py's
  histogram), one line per system;
- ptvsri_loss_landscape.png: the loss-landscape contours (analysis/lls.py's grid) side by side, one panel per system.
Written to <outputs>/tables/ beside the experiment's table."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ORDER = ["ri", "pt", "avg_fusion", "ot_fusion", "ot_fusion_ct", "ot_fusion_input_first"]
LABELS = {"ri": "RI", "pt": "PT", "avg_fusion": "average", "ot_fusion": "OT fusion", "ot_fusion_ct": "OT fusion + CT",
          "ot_fusion_input_first": "OT fusion (input first)"}


def newest(outputs: Path, scale: str) -> dict[tuple[str, str], dict]:
    found: dict[tuple[str, str], dict] = {}
    for path in outputs.rglob("results.json"):
        try:
            r = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        c = r.get("choices", {})
        if r.get("experiment_name") != "ptvsri_wmt" or c.get("scale") != scale or r.get("status") != "complete":
            continue
        key = (c.get("method"), c.get("task"))
        if key not in found or r.get("finished", "") > found[key].get("finished", ""):
            r["_dir"] = path.parent
            found[key] = r
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outputs", default="outputs")
    parser.add_argument("--scale", default="cpu")
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    outputs = Path(args.outputs)
    runs = newest(outputs, args.scale)
    if not runs:
        raise SystemExit(f"no complete ptvsri_wmt results at scale {args.scale} under {outputs}")
    target = outputs / "tables"
    target.mkdir(parents=True, exist_ok=True)
    methods = [m for m in ORDER if any(k[0] == m for k in runs)]

    nmt = {m: runs[(m, "nmt")]["metrics"] for m in methods if (m, "nmt") in runs}
    if nmt:
        sets = [k.split("/")[0] for k in next(iter(nmt.values())) if k.endswith("/bleu")]
        fig, ax = plt.subplots(figsize=(7, 3.4))
        width = 0.8 / len(nmt)
        for i, (m, metrics) in enumerate(nmt.items()):
            ax.bar(np.arange(len(sets)) + i * width, [metrics.get(f"{s}/bleu", 0) for s in sets], width, label=LABELS[m])
        ax.set_xticks(np.arange(len(sets)) + 0.4 - width / 2, sets)
        ax.set_ylabel("BLEU")
        ax.legend(fontsize=7, ncol=2)
        ax.set_title(f"PTvsRI ({args.scale}): BLEU per test set", fontsize=9)
        fig.tight_layout()
        fig.savefig(target / "ptvsri_bleu.png", dpi=120)
        plt.close(fig)

    lpd = {m: runs[(m, "lexical_entropy")]["info"] for m in methods if (m, "lexical_entropy") in runs}
    if lpd:
        fig, ax = plt.subplots(figsize=(6, 3.4))
        for m, info in lpd.items():
            counts = np.array(info["bucket_counts"], dtype=float)
            bits = info["bucket_bits"]
            ax.plot([f"{i * bits:g}-{(i + 1) * bits:g}" for i in range(len(counts))], 100 * counts / counts.sum(),
                    marker="o", label=LABELS[m])
        ax.set_xlabel("entropy of the output distribution (bits)")
        ax.set_ylabel("target positions (%)")
        ax.legend(fontsize=7)
        ax.set_title(f"PTvsRI ({args.scale}): lexical probability distribution (test set)", fontsize=9)
        fig.tight_layout()
        fig.savefig(target / "ptvsri_lexical_entropy.png", dpi=120)
        plt.close(fig)

    lls = {m: json.loads((runs[(m, "loss_landscape")]["_dir"] / "loss_landscape.json").read_text())
           for m in methods if (m, "loss_landscape") in runs}
    if lls:
        fig, axes = plt.subplots(1, len(lls), figsize=(3.3 * len(lls), 3.2), squeeze=False)
        low = min(float(np.min(g["loss_bits"])) for g in lls.values())
        levels = np.linspace(low, low + 12.0, 16)
        for ax, (m, g) in zip(axes[0], lls.items()):
            loss = np.minimum(np.array(g["loss_bits"]), levels[-1])
            cs = ax.contourf(g["x"], g["y"], loss, levels=levels, cmap="coolwarm")
            ax.plot([1.0], [0.0], "k*", ms=9)
            ax.plot([0.0], [0.0], "ko", ms=4)
            ax.set_title(LABELS[m], fontsize=9)
            ax.set_xlabel("θ* − θ_init direction")
        axes[0][0].set_ylabel("other system's direction")
        fig.colorbar(cs, ax=axes[0].tolist(), label="loss (bits/token)", shrink=0.85)
        fig.suptitle(f"PTvsRI ({args.scale}): loss landscapes (★ trained, ● init)", fontsize=9)
        fig.savefig(target / "ptvsri_loss_landscape.png", dpi=120, bbox_inches="tight")
        plt.close(fig)
    print("\n".join(str(p) for p in sorted(target.glob("ptvsri_*.png"))))


if __name__ == "__main__":
    main()
