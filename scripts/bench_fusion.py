"""PTvsRI fusion cost: the release-faithful OT alignment of one nmt-small model into another, per layer and in
total, against the time of one training epoch of the same model on the synthetic pair (40k sentence pairs,
batches of 64: timed over a few updates and scaled to the epoch).

    python scripts/bench_fusion.py [--steps 40] [--tokens 16384] [--ri <checkpoint dir> --pt <checkpoint dir>]

Without --ri/--pt two random-init models stand in for RI and PT: the same OT problems of the same sizes, but
fewer activation recomputes (a parameter whose plans are the identity is not changed, so nothing is recomputed).
With the trained systems' cached checkpoints (`~/.cache/llmlab/trained/ptvsri-ri-*`, `ptvsri-pt-*`, written by
`llmlab reproduce ptvsri_wmt`), the cost is the experiment's."""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import torch


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="training updates to time")
    parser.add_argument("--tokens", type=int, default=16384, help="activation batch budget (the release's max_tokens)")
    parser.add_argument("--ri", help="a trained RI checkpoint directory (model.safetensors)")
    parser.add_argument("--pt", help="a trained PT checkpoint directory (model.safetensors)")
    args = parser.parse_args()

    from omegaconf import OmegaConf

    import llmlab  # noqa: F401  (registers ${fixture:...})
    from llmlab.fixtures import fixture_path
    from llmlab.methods.fusion import ot
    from llmlab.methods.fusion.fuse import OTFusion
    from llmlab.models import load
    from llmlab.paths import CONF_DIR
    from llmlab.training.seq2seq import Seq2SeqSettings, train_seq2seq

    spec = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "model" / "nmt-small.yaml"), resolve=True)
    d = fixture_path("synthetic_mt")
    lm = load(spec, seed=0)
    other = load(spec, seed=1)
    if args.ri and args.pt:
        from safetensors.torch import load_model

        load_model(lm.model, f"{args.ri}/model.safetensors", strict=False)
        load_model(other.model, f"{args.pt}/model.safetensors", strict=False)
    method = OTFusion(train_source=f"{d}/train.en", train_target=f"{d}/train.de", valid_source=f"{d}/valid.en",
                      valid_target=f"{d}/valid.de", activation_tokens=args.tokens)
    batch, sample = method.activation_batch(lm)
    print(f"activation batch: {sample}")
    start = time.perf_counter()
    _, _, facts = ot.fuse_release(lm.model, other.model, batch, p0=0.1)
    total = time.perf_counter() - start
    per_layer = defaultdict(float)
    for name, sec in facts["seconds_per_module"].items():
        parts = name.split(".")
        key = ".".join(parts[:4]) if "layers" in parts else ".".join(parts[:3])
        per_layer[key] += sec
    print(f"{'part':40s} seconds")
    for key, sec in per_layer.items():
        print(f"{key:40s} {sec:7.2f}")
    print(f"alignment total: {total:.1f} s ({len(facts['seconds_per_module'])} modules, "
          f"{facts['recomputes']} activation recomputes)")

    src = open(f"{d}/train.en", encoding="utf-8").read().splitlines()
    tgt = open(f"{d}/train.de", encoding="utf-8").read().splitlines()
    rows = [{"source": s, "target": t, "src": "en", "tgt": "de"} for s, t in zip(src, tgt)]
    settings = Seq2SeqSettings(max_steps=args.steps, batch_size=64, warmup_steps=5, logging_steps=10 ** 6)
    start = time.perf_counter()
    train_seq2seq(lm, rows[: 64 * args.steps], settings)
    per_step = (time.perf_counter() - start) / args.steps
    epoch = per_step * len(rows) / 64
    print(f"training: {per_step:.3f} s per update of 64 pairs; one epoch of {len(rows)} pairs ~ {epoch:.0f} s")
    print(f"alignment / epoch = {total / epoch:.3f}")


if __name__ == "__main__":
    torch.set_num_threads(max(1, torch.get_num_threads()))
    main()
