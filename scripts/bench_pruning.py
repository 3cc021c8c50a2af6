"""Pruning benchmarks (figures for the closing note; not a test), on smollm2-135m at 50 % unstructured:

1. the sparsity reached vs the target (zeros counted, in total and the min/max over linears);
2. wall time of magnitude, Wanda and SparseGPT, per block and in total (calibration 32 x 512 tokens by
   default: the prototype this replaces took 44 s for Wanda and 137 s for SparseGPT);
3. WikiText-2 test perplexity, dense vs each pruner (the literature's order: SparseGPT ~ Wanda << magnitude).

    python scripts/bench_pruning.py --wikitext ../shared/data/lm/wikitext-2 [--nsamples 32 --seqlen 512]

Calibration windows come from WikiText-2 *valid* (the local copy has no train split); perplexity from *test*
on non-overlapping windows (Wanda's eval_ppl), the first --ppl-tokens tokens.
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from llmlab.context import RunContext  # noqa: E402
from llmlab.methods.base import NoMethod  # noqa: E402
from llmlab.methods.pruning.magnitude import Magnitude  # noqa: E402
from llmlab.methods.pruning.sparsegpt import SparseGPT  # noqa: E402
from llmlab.methods.pruning.wanda import Wanda  # noqa: E402
from llmlab.models import load  # noqa: E402
from llmlab.tasks.perplexity import Perplexity  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wikitext", required=True, help="directory with WikiText-2 valid.txt and test.txt")
    ap.add_argument("--nsamples", type=int, default=32)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--window", type=int, default=1024, help="perplexity window (= stride)")
    ap.add_argument("--ppl-tokens", type=int, default=32768)
    ap.add_argument("--sparsity", type=float, default=0.5)
    args = ap.parse_args()
    from omegaconf import OmegaConf

    spec = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "model" / "smollm2-135m.yaml"))
    dense = load(spec)
    root = Path(args.wikitext)
    ppl = Perplexity(path=str(root / "test.txt"), max_length=args.window, stride=args.window, max_tokens=args.ppl_tokens)

    def perplexity(lm) -> float:
        return ppl.evaluate(lm, NoMethod(), RunContext(out_dir=Path("/tmp/bench_pruning"))).metrics["perplexity"]

    rows = [("dense", None, perplexity(dense))]
    calib = dict(nsamples=args.nsamples, seqlen=args.seqlen, calibration_source="text",
                 calibration_path=str(root / "valid.txt"), cache=False, sparsity=args.sparsity)

    class Ctx:
        seed = 0

    for pruner in (Magnitude(cache=False, sparsity=args.sparsity), Wanda(**calib), SparseGPT(**calib)):
        lm = copy.copy(dense)
        lm.model = copy.deepcopy(dense.model)
        t0 = time.perf_counter()
        pruner.prepare(lm, Ctx())
        wall = time.perf_counter() - t0
        facts = pruner.report()
        rows.append((pruner.name, {**facts, "wall": wall}, perplexity(lm)))
        del lm

    print(f"smollm2-135m, {args.sparsity:.0%} unstructured; calibration {args.nsamples} x {args.seqlen} tokens of "
          f"WikiText-2 valid; perplexity on the first {args.ppl_tokens} tokens of WikiText-2 test, windows of {args.window}")
    print(f"{'pruner':10s} {'sparsity':>9s} {'min/max per linear':>20s} {'s/block':>8s} {'total s':>8s} {'ppl':>9s}")
    for name, f, value in rows:
        if f is None:
            print(f"{name:10s} {'':>9s} {'':>20s} {'':>8s} {'':>8s} {value:9.2f}")
            continue
        per = list(f["sparsity_per_layer"].values())
        blocks = f["seconds_per_block"]
        print(f"{name:10s} {f['sparsity']:9.6f} {min(per):9.6f}/{max(per):9.6f} {sum(blocks) / len(blocks):8.2f} "
              f"{f['wall']:8.1f} {value:9.2f}")


if __name__ == "__main__":
    main()
