"""Foundation benchmarks: start-up, embedded model load (cold vs cached), framework overhead.

    python scripts/bench_foundation.py [--lengths 512 1024] [--depths 0 50 100] [--skip-cold]

Prints:
  - `llmlab ls` start-up time (median of 3)
  - SmolLM2 load: cold (GGUF dequantized into an empty temporary cache) vs cached
  - the needle task through llmlab (Needle.evaluate with the `none` method) vs a bare transformers
    loop (`model.generate`, greedy) over the same prompts with the same model: time ratio
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lengths", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--depths", type=float, nargs="+", default=[0, 50, 100])
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--skip-cold", action="store_true")
    parser.add_argument("--reps", type=int, default=2, help="repetitions of each side (best is reported)")
    args = parser.parse_args()

    ls_times = []
    for _ in range(3):
        t, _ = timed(subprocess.run, [sys.executable, "-m", "llmlab.cli", "ls"], capture_output=True, cwd=REPO)
        ls_times.append(t)
    print(f"llmlab ls start-up: median {statistics.median(ls_times):.2f}s over 3")

    import torch
    import yaml

    from llmlab.context import RunContext
    from llmlab.methods.base import NoMethod
    from llmlab.models import load
    from llmlab.tasks.needle import Needle

    spec = yaml.safe_load((REPO / "conf" / "model" / "smollm2-135m.yaml").read_text())
    if not args.skip_cold:
        with tempfile.TemporaryDirectory() as cache:
            env = dict(os.environ, LLMLAB_CACHE=cache)
            code = ("import yaml,sys; from llmlab.models import load; "
                    f"load(yaml.safe_load(open({str(REPO / 'conf/model/smollm2-135m.yaml')!r})))")
            t_cold, _ = timed(subprocess.run, [sys.executable, "-c", code], env=env, capture_output=True, cwd=REPO)
        print(f"smollm2-135m cold load (GGUF dequantize + cache write, incl. imports): {t_cold:.1f}s")
    load(spec)
    t_cached, lm = timed(load, spec)
    print(f"smollm2-135m cached load (in process): {t_cached:.2f}s")

    task = Needle(context_lengths=args.lengths, depths=args.depths, max_new_tokens=args.max_new_tokens, heatmap=False)
    hay_ids = lm.tokenizer(task.haystack(), add_special_tokens=False)["input_ids"]
    prompts = [task.build_prompt(lm, hay_ids, L, d)[0] for L in args.lengths for d in args.depths]
    with torch.inference_mode():  # warm-up, so that neither side pays for first-call costs
        lm.model.generate(torch.tensor([prompts[0]]), max_new_tokens=4, do_sample=False,
                          pad_token_id=lm.tokenizer.pad_token_id)

    def bare():
        outs = []
        with torch.inference_mode():
            for ids in prompts:
                x = torch.tensor([ids])
                y = lm.model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=args.max_new_tokens,
                                      do_sample=False, pad_token_id=lm.tokenizer.pad_token_id)
                outs.append(lm.tokenizer.decode(y[0, len(ids):], skip_special_tokens=True).strip())
        return outs

    t_llmlab, t_bare = float("inf"), float("inf")
    for _ in range(args.reps):  # alternate the two sides; keep the best time of each
        with tempfile.TemporaryDirectory() as out:
            t, scores = timed(task.evaluate, lm, NoMethod(), RunContext(out_dir=Path(out)))
        t_llmlab = min(t_llmlab, t)
        t, bare_out = timed(bare)
        t_bare = min(t_bare, t)
    same = sum(a == p["prediction"] for a, p in zip(bare_out, scores.predictions))
    print(f"needle {len(prompts)} cells (lengths {args.lengths}, depths {args.depths}): "
          f"llmlab (Needle.evaluate, incl. haystack tokenization) {t_llmlab:.1f}s vs bare transformers generate {t_bare:.1f}s -> ratio {t_llmlab / t_bare:.3f}; "
          f"identical answers {same}/{len(prompts)}")


if __name__ == "__main__":
    main()
