"""lm-eval through llmlab (`task=lm_eval`, in-process on the loaded model) vs lm-eval's own CLI on the same
model directory and task directory: the metrics must be identical; the wall time of the whole command
(start, model load, evaluation) is compared, target <= 1.05x the CLI's. Runs alternate which goes first;
the best of each is kept. A figure for the closing note, not a test.

    python scripts/bench_lm_eval.py --esnli ../shared/data/nli/esnli [--limit 300] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def timed(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--esnli", required=True, help="the e-SNLI release directory (s1/s2/labels .dev/.test)")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--limit", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    from llmlab.models import embedded
    from omegaconf import OmegaConf

    spec = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "model" / f"{args.model}.yaml"))
    model_dir = embedded.converted_dir(spec)  # the directory llmlab loads the embedded model from
    work = Path(tempfile.mkdtemp(prefix="bench_lm_eval_"))
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    ours_cmd = [str(BIN / "llmlab"), "run", "method=none", f"model={args.model}", "task=lm_eval",
                "task.tasks=[esnli_local]", f"task.data.esnli={Path(args.esnli).resolve()}",
                f"task.batch_size={args.batch_size}", f"limit={args.limit}", "logger=none"]
    times: dict[str, list[float]] = {"llmlab": [], "lm_eval CLI": []}
    results: dict[str, dict] = {}
    for rep in range(args.repeats):
        # the CLI reads the task directory the first llmlab run wrote, so llmlab goes first on even repeats
        order = ["llmlab", "lm_eval CLI"] if rep % 2 == 0 else ["lm_eval CLI", "llmlab"]
        for who in order:
            if who == "llmlab":  # a fresh output root each time: llmlab skips a run whose result exists
                root = work / f"llmlab{rep}"
                times[who].append(timed(ours_cmd, dict(env, LLMLAB_OUTPUTS=str(root))))
                latest = next(root.rglob("results.json"))
                results[who] = json.loads(latest.read_text())
                task_dir = results[who]["info"]["task_dir"]
            else:
                out = work / f"cli{rep}"
                cli = [str(BIN / "lm_eval"), "run", "--model", "hf", "--model_args",
                       f"pretrained={model_dir},dtype=float32", "--device", "cpu", "--tasks", "esnli_local", "--include_path",
                       task_dir, "--limit", str(args.limit), "--batch_size", str(args.batch_size), "--output_path", str(out)]
                times[who].append(timed(cli, env))
                results[who] = json.loads(next(out.rglob("results_*.json")).read_text())
    ours = {k.split("/", 1)[1]: v for k, v in results["llmlab"]["metrics"].items() if k.startswith("esnli_local/")}
    theirs = {k: v for k, v in results["lm_eval CLI"]["results"]["esnli_local"].items() if isinstance(v, float)}
    print(f"model {args.model} ({model_dir}), esnli_local, first {args.limit} test documents, batch {args.batch_size}")
    for k in sorted(theirs):
        print(f"  {k:24s} llmlab {ours.get(k)!r:24}  lm_eval CLI {theirs[k]!r}  {'identical' if ours.get(k) == theirs[k] else 'DIFFERENT'}")
    best = {who: min(t) for who, t in times.items() if t}
    print("wall time (best of runs): " + ", ".join(f"{w} {t:.1f} s ({', '.join(f'{x:.1f}' for x in times[w])})"
                                                     for w, t in best.items()))
    print(f"ratio llmlab / lm_eval CLI: {best['llmlab'] / best['lm_eval CLI']:.3f} (target <= 1.05)")
    print(f"llmlab phases (s): {results['llmlab'].get('timings_s')}")


if __name__ == "__main__":
    main()
