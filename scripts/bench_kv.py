"""Benchmark the KV presses: bytes held, prefill time, decode speed, peak RSS.

    python scripts/bench_kv.py --model smollm2-135m --lengths 2048 4096 8192 --kv-size 128

For each prompt length (a deterministic prompt of Python stdlib docstrings) and each press in
conf/method/ (with its configured defaults and the given kv_size), one prefill under the press:
  KV held vs full     bytes the cache holds after prefill vs the uncompressed cache
  held / budget       vs the theoretical budget kv_size x per-token bytes x layers (target <= 1.05)
  prefill             wall and CPU seconds (min over --reps), and the ratio to fullkv (target <= 1.15)
  decode              tokens/s of greedy decoding after the prefill, at --decode-length (default:
                      the longest length)
  peak RSS            the process's peak resident memory during that press's prefill+decode
                      (VmHWM, reset before each press through malloc_trim + /proc/self/clear_refs)
Presses are interleaved within each repetition, so machine load affects them alike; CPU seconds are
less sensitive than wall seconds to other processes on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PRESSES = ["fullkv", "streamingllm", "h2o", "snapkv", "pyramidkv", "dynamickv"]


def reset_peak_rss() -> bool:
    try:  # hand freed heap back to the OS first, so one press's peak does not carry into the next
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_press(name: str, kv_size: int):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(REPO / "conf" / "method" / f"{name}.yaml")
    if name != "fullkv":
        cfg.kv_size = kv_size
    return instantiate(cfg)


def prompt_ids(lm, length: int) -> torch.Tensor:
    from llmlab.corpus import stdlib_docstrings

    ids: list[int] = []
    for doc in stdlib_docstrings():
        ids.extend(lm.tokenizer(doc + "\n\n", add_special_tokens=False)["input_ids"])
        if len(ids) >= length:
            break
    while len(ids) < length:
        ids = ids + ids
    return torch.tensor([ids[:length]])


@torch.inference_mode()
def run_one(lm, press, ids, decode_tokens: int):
    from transformers import DynamicCache

    model = lm.model
    cache = DynamicCache(config=model.config)
    with press.apply(lm):
        w0, c0 = time.perf_counter(), time.process_time()
        out = model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        stats = press.kv_stats()
        tps = None
        if decode_tokens:
            n = ids.shape[1]
            tok = out.logits[:, -1].argmax(-1)
            d0 = time.perf_counter()
            for step in range(decode_tokens):
                out = model(input_ids=tok[:, None], cache=cache, use_cache=True,
                            position_ids=torch.tensor([[n + step]]))
                tok = out.logits[:, -1].argmax(-1)
            tps = decode_tokens / (time.perf_counter() - d0)
    return wall, cpu, stats, tps


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m", help="a conf/model/<name>.yaml")
    ap.add_argument("--lengths", type=int, nargs="+", default=[2048, 4096, 8192])
    ap.add_argument("--kv-size", type=int, default=128)
    ap.add_argument("--presses", nargs="+", default=PRESSES)
    ap.add_argument("--reps", type=int, default=2, help="prefill repetitions per length (min is reported)")
    ap.add_argument("--decode-length", type=int, default=None, help="prompt length for the decode figure")
    ap.add_argument("--decode-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.threads:
        torch.set_num_threads(args.threads)
    from omegaconf import OmegaConf

    from llmlab.models import load

    spec = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "model" / f"{args.model}.yaml"), resolve=True)
    lm = load(spec)
    cfg = lm.model.config
    print(f"model {args.model}: {cfg.num_hidden_layers} layers, {cfg.num_attention_heads} q heads, "
          f"{cfg.num_key_value_heads} kv heads; kv_size {args.kv_size}; torch threads {torch.get_num_threads()}; "
          f"load average {os.getloadavg()[0]:.1f}")
    decode_length = args.decode_length or max(args.lengths)
    presses = {name: make_press(name, args.kv_size) for name in args.presses}
    can_reset = reset_peak_rss()
    for length in args.lengths:
        ids = prompt_ids(lm, length)
        rows = {name: {"wall": float("inf"), "cpu": float("inf")} for name in presses}
        run_one(lm, presses["fullkv"] if "fullkv" in presses else next(iter(presses.values())), ids[:, :256], 0)  # warm-up
        for rep in range(args.reps):
            for name, press in presses.items():
                reset_peak_rss()
                decode = args.decode_tokens if (length == decode_length and rep == 0) else 0
                wall, cpu, stats, tps = run_one(lm, press, ids, decode)
                row = rows[name]
                row["wall"], row["cpu"] = min(row["wall"], wall), min(row["cpu"], cpu)
                row["stats"] = stats
                if tps is not None:
                    row["tps"] = tps
                if rep == 0:
                    row["rss"] = peak_rss_mib()
        base = rows.get("fullkv")
        print(f"\n== prompt {length} tokens (reps {args.reps}; load average {os.getloadavg()[0]:.1f}) ==")
        print(f"{'press':<13}{'KV MiB':>9}{'full MiB':>10}{'held/full':>10}{'held/budget':>12}"
              f"{'prefill s':>10}{'cpu s':>8}{'x full':>8}{'x full cpu':>11}{'decode tok/s':>13}{'peak RSS MiB':>13}")
        for name, row in rows.items():
            s = row["stats"]
            held, full, budget = s["kv_bytes"], s["kv_bytes_full"], s["kv_bytes_budget"]
            xw = row["wall"] / base["wall"] if base else float("nan")
            xc = row["cpu"] / base["cpu"] if base else float("nan")
            tps = f"{row['tps']:.1f}" if "tps" in row else "-"
            rss = f"{row['rss']:.0f}" if can_reset or name == next(iter(rows)) else "-"
            print(f"{name:<13}{held / 2**20:>9.2f}{full / 2**20:>10.2f}{held / full:>10.3f}{held / budget:>12.3f}"
                  f"{row['wall']:>10.2f}{row['cpu']:>8.2f}{xw:>8.2f}{xc:>11.2f}{tps:>13}{rss:>13}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
