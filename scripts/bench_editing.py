"""Benchmark the weight editors: seconds per edit and edits per second, per model.

    python scripts/bench_editing.py --data /path/to/bizsre_test.json --models smollm2-135m gemma3-270m \
        --editors ft ft_m rome memit --edits 3

Each editor (conf/method/<name>.yaml, the paper's defaults) writes the first `--edits` Bi-ZsRE
English edits one at a time, each restored before the next, as the editing tasks do. Reported:
  first     the first edit, which pays one-off costs (ROME/MEMIT context templates; MEMIT's key
            covariance from the local text sample, or its disk cache)
  per edit  the median of the later edits
  edits/s   1 / per edit
ROME's and MEMIT's value optimisation stops early once its loss is below 5e-2, so the time per edit
varies with the fact. IKE, X-KDE and Reason-KE do not change weights: their cost is the longer prompt
at evaluation time, measured by the tasks' evaluate timings instead.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> None:
    from llmlab import models
    from llmlab.checks import build
    from llmlab.tasks.bizsre import BiZsRE
    from llmlab.tasks.editing import request_from

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="Bi-ZsRE test JSON (original format)")
    parser.add_argument("--models", nargs="+", default=["smollm2-135m", "gemma3-270m"])
    parser.add_argument("--editors", nargs="+", default=["ft", "ft_m", "rome", "memit"])
    parser.add_argument("--edits", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cases = BiZsRE(data_path=args.data).load_cases()[: args.edits]
    requests = [request_from(c["en"], i, "en") for i, c in enumerate(cases)]
    rows = []
    for model_name in args.models:
        lm = models.load(OmegaConf.load(REPO / "conf" / "model" / f"{model_name}.yaml"))
        for editor_name in args.editors:
            cfg = OmegaConf.load(REPO / "conf" / "method" / f"{editor_name}.yaml")
            if "defaults" in cfg:  # a variant (ft_m): its base config, then its own keys
                base = OmegaConf.load(REPO / "conf" / "method" / f"{cfg.defaults[0]}.yaml")
                cfg = OmegaConf.merge(base, {k: v for k, v in cfg.items() if k != "defaults"})
            editor = build(cfg, "method", {"method": editor_name})
            times = []
            for request in requests:
                start = time.perf_counter()
                with editor.edit(lm, [request]):
                    times.append(time.perf_counter() - start)
            later = times[1:] or times
            per = statistics.median(later)
            rows.append({"model": model_name, "editor": editor_name, "first_s": times[0], "per_edit_s": per,
                         "edits_per_s": 1.0 / per, "edits": len(times)})
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n| model | editor | first edit (s) | per edit (s) | edits/s |  (threads {torch.get_num_threads()})")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['editor']} | {r['first_s']:.1f} | {r['per_edit_s']:.1f} | {r['edits_per_s']:.3f} |")


if __name__ == "__main__":
    main()
