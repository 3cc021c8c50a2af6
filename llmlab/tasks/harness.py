"""Any lm-evaluation-harness task on the composed model, in-process (`task=lm_eval`).

The model the run loaded, after the method's `prepare` (pruned, quantized, distilled, fine-tuned), is
wrapped in lm-eval's `HFLM(pretrained=<the model object>, tokenizer=<its tokenizer>)`: nothing is
reloaded from disk, so the harness scores exactly the weights the method left. lm-eval then runs as
its CLI does (`simple_evaluate` with its default seeds), on:

- the YAML task directories llmlab ships (llmlab/lm_eval_tasks: `esnli_local`, `gsm8k_local`) and any
  `include_path` a user adds; lm-eval's built-in index (thousands of tasks, most of them hub datasets)
  is read only with `builtin: true`;
- local files: a shipped YAML names each file it reads as `${data.<key>}` (`task.data.<key>=<path>`,
  filled from an experiment's `eval_data:`). The run writes the YAMLs with the paths filled in to
  `<run dir>/lm_eval_tasks/`, so `lm_eval --include_path <run dir>/lm_eval_tasks` runs the same tasks.

Recorded: the metrics as lm-eval names them, `<task>/<metric>,<filter>` (`esnli_local/acc,none`,
`gsm8k_local/exact_match,strict-match`) with their `_stderr`, lm-eval's version, each task's version,
n-samples and a hash of its resolved config (`info`); lm-eval's logged samples are the predictions.

A method that acts only while the model answers (a KV press) cannot be honoured inside lm-eval's own
loglikelihood and generate calls: the task refuses it before anything loads (`honours = ()`).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from llmlab.errors import UserError
from llmlab.metrics.registry import register
from llmlab.tasks.base import Scores, Task

SHIPPED = Path(__file__).resolve().parent.parent / "lm_eval_tasks"
PLACEHOLDER = re.compile(r"\$\{data\.([A-Za-z0-9_]+)\}")
# ${lm_eval_task:<path>}: a task YAML of the installed lm-eval (lm_eval/tasks/<path>), for a shipped task that
# `include`s lm-eval's own prompt and metrics and only swaps the data for local files (bbh_local)
LM_EVAL_TASK = re.compile(r"\$\{lm_eval_task:([^}]+)\}")


def lm_eval_tasks_dir() -> Path:
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).resolve().parent


def listing(known: dict[str, Path]) -> str:
    """The known names for a message: a group stands for the tasks beside it ("bbh_local (27 tasks)")."""
    groups = {name: path for name, path in known.items() if re.search(r"^group:", path.read_text(encoding="utf-8"), flags=re.M)}
    members = {name for name, path in known.items() if name not in groups and
               any(path.parent == g.parent for g in groups.values())}
    return ", ".join(f"{n} ({sum(known[m].parent == p.parent for m in members)} tasks)" if (p := groups.get(n)) else n
                     for n in sorted(set(known) - members))


def yaml_task_names(directory: Path) -> dict[str, Path]:
    """{task or group name: YAML file} for the task YAMLs in `directory` (a cheap scan: `task:` / `group:` lines
    with a name on them)."""
    names = {}
    for path in sorted(Path(directory).rglob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        match = (re.search(r"^task:[ \t]*([^\s#]+)", text, flags=re.M) or
                 re.search(r"^group:[ \t]*([^\s#]+)", text, flags=re.M))
        if match:
            names[match.group(1).strip("'\"")] = path
    return names


def config_hash(config: dict) -> str:
    """sha256 (first 16 hex) of a task's resolved config as lm-eval dumps it, keys sorted."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class LmEval(Task):
    name: ClassVar[str] = "lm_eval"
    unit: ClassVar[str] = "request"
    limit_means: ClassVar[str] = "the first N documents of each lm-eval task (lm-eval's --limit)"
    honours: ClassVar[tuple] = ()  # lm-eval calls the model itself: an inference-time method is refused

    tasks: list[str] = field(default_factory=lambda: ["esnli_local"])
    include_path: list[str] = field(default_factory=list)  # more directories of lm-eval task YAMLs
    builtin: bool = False            # also index lm-eval's built-in tasks (slow; most need the hub)
    data: dict[str, Any] = field(default_factory=dict)  # {key: path} for the ${data.<key>} in the YAMLs
    num_fewshot: int | None = None   # null: each task's own
    batch_size: int = 8              # lm-eval --batch_size
    apply_chat_template: bool = False  # lm-eval --apply_chat_template
    samples: bool = True             # record lm-eval's per-document samples as the predictions
    limit: int | None = None         # documents per lm-eval task, for this task only; null: the run's `limit`

    # -- before the model loads -------------------------------------------------------------------
    def _directories(self) -> list[Path]:
        return [SHIPPED] + [Path(p).expanduser() for p in self.include_path]

    def check_data(self) -> None:
        if isinstance(self.tasks, str):
            self.tasks = [t.strip() for t in self.tasks.split(",") if t.strip()]
        if not self.tasks:
            raise UserError("task=lm_eval needs task.tasks=[<lm-eval task name>, ...]; llmlab ships "
                            f"{', '.join(yaml_task_names(SHIPPED))}.")
        for d in self._directories()[1:]:
            if not d.is_dir():
                raise UserError(f"lm_eval: task.include_path has {d}, which is not a directory. Give directories "
                                f"of lm-eval task YAMLs (lm-eval's --include_path).")
        known: dict[str, Path] = {}
        for d in self._directories():
            known.update(yaml_task_names(d))
        missing = [t for t in self.tasks if t not in known]
        if missing and not self.builtin:
            raise UserError(f"lm_eval: no task YAML for {', '.join(missing)} in {', '.join(map(str, self._directories()))}. "
                            f"Known here: {listing(known)}. Add a directory with task.include_path=[<dir>], "
                            f"or task.builtin=true for lm-eval's built-in tasks (most read hub datasets: set "
                            f"HF_DATASETS_OFFLINE=0 where the hub is reachable).")
        for t in self.tasks:
            if t in known:
                group = re.search(r"^group:", known[t].read_text(encoding="utf-8"), flags=re.M)
                files = sorted(known[t].parent.glob("*.yaml")) if group else [known[t]]   # a group: its members too
                for key in dict.fromkeys(k for f in files for k in PLACEHOLDER.findall(f.read_text(encoding="utf-8"))):
                    path = self.data.get(key)
                    if not path or not Path(str(path)).expanduser().exists():
                        raise UserError(
                            f"lm_eval: task {t} ({known[t].name}) reads ${{data.{key}}}, and "
                            f"{'task.data.' + key + '=' + str(path) + ' does not exist' if path else 'no path is set'}. "
                            f"Give the file or directory with task.data.{key}=<path> (an experiment's eval_data.{key} "
                            f"fills it); the shipped tasks read the local release files (e.g. ../shared/data).")

    # -- the run ----------------------------------------------------------------------------------
    def materialize(self, target: Path) -> Path:
        """Copy the task directories to `target`, ${data.<key>} filled with absolute paths."""
        if target.exists():
            shutil.rmtree(target)
        for i, d in enumerate(self._directories()):
            dest = target if i == 0 else target / f"include_{i}_{d.name}"
            shutil.copytree(d, dest, ignore=shutil.ignore_patterns("__pycache__"))
            for path in dest.rglob("*.yaml"):
                text = path.read_text(encoding="utf-8")
                filled = PLACEHOLDER.sub(lambda m: json.dumps(str(Path(str(self.data[m.group(1)])).expanduser().resolve()))
                                         if self.data.get(m.group(1)) else m.group(0), text)
                filled = LM_EVAL_TASK.sub(lambda m: json.dumps(str(lm_eval_tasks_dir() / m.group(1))), filled)
                path.write_text(filled, encoding="utf-8")
        return target

    def evaluate(self, lm, method, ctx) -> Scores:
        import lm_eval
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager

        with ctx.timer("evaluate/items"):
            directory = self.materialize(ctx.path("lm_eval_tasks"))
            manager = TaskManager(include_path=str(directory), include_defaults=bool(self.builtin))
            wrapped = HFLM(pretrained=lm.model, tokenizer=lm.tokenizer, batch_size=self.batch_size)
        limit = self.limit if self.limit is not None else ctx.limit
        with ctx.timer("evaluate/examples"):
            out = lm_eval.simple_evaluate(model=wrapped, tasks=list(self.tasks), num_fewshot=self.num_fewshot,
                                          limit=limit, task_manager=manager, log_samples=self.samples,
                                          apply_chat_template=self.apply_chat_template, batch_size=self.batch_size)
        metrics, per_task = self.read_results(out)
        main = next((k for k in metrics if k.startswith(f"{self.tasks[0]}/") and "_stderr," not in k), None)
        predictions = [self.sample_row(task, s) for task, rows in (out.get("samples") or {}).items() for s in rows]
        info = {"lm_eval_version": getattr(lm_eval, "__version__", "unknown"), "tasks": per_task,
                "limit_means": self.limit_means, "items": len(predictions), "task_dir": str(directory),
                "cli": f"lm_eval --model hf --model_args pretrained=<model dir> --tasks {','.join(self.tasks)} "
                       f"--include_path {directory} --batch_size {self.batch_size}"
                       + (f" --limit {limit}" if limit else "")
                       + (f" --num_fewshot {self.num_fewshot}" if self.num_fewshot is not None else "")}
        return Scores(metrics=metrics, predictions=predictions, main_metric=main, info=info)

    def read_results(self, out: dict) -> tuple[dict[str, float], dict[str, dict]]:
        """Flat `<task>/<metric>,<filter>` metrics (each registered with lm-eval's direction), and per task its
        version, n-samples and config hash."""
        metrics: dict[str, float] = {}
        per_task: dict[str, dict] = {}
        for task, values in out["results"].items():
            better = (out.get("higher_is_better") or {}).get(task, {})
            for key, value in values.items():
                if "," not in key or not isinstance(value, (int, float)):
                    continue  # "alias", "N/A" stderr, ...
                metric, filt = key.split(",", 1)
                base = metric[: -len("_stderr")] if metric.endswith("_stderr") else metric
                if metric.endswith("_stderr"):
                    register(key, f"lm-evaluation-harness standard error of {base} (filter {filt})", None)
                else:
                    register(key, f"lm-evaluation-harness {metric} (filter {filt})", better.get(metric, True))
                metrics[f"{task}/{key}"] = float(value)
            config = (out.get("configs") or {}).get(task, {})
            per_task[task] = {"version": (out.get("versions") or {}).get(task),
                              "n_samples": (out.get("n-samples") or {}).get(task),
                              "config_hash": config_hash(config), "num_fewshot": config.get("num_fewshot")}
        return metrics, per_task

    @staticmethod
    def sample_row(task: str, sample: dict) -> dict:
        """One logged sample, trimmed: the prompt's end (the question; few-shot examples come first), the
        target, what the model answered (after lm-eval's filter) and the per-document metric values."""
        args = sample.get("arguments") or []
        first = args[0] if args else None
        prompt = str(first[0] if isinstance(first, (list, tuple)) else (first or ""))
        row = {"task": task, "doc_id": sample.get("doc_id"), "filter": sample.get("filter"),
               "prompt_tail": prompt[-400:], "target": str(sample.get("target")),
               "response": sample.get("filtered_resps")}
        resps = row["response"]
        if isinstance(resps, list) and resps and all(isinstance(r, (list, tuple)) and len(r) == 2 for r in resps):
            row["chosen"] = max(range(len(resps)), key=lambda i: resps[i][0])  # multiple choice: the likeliest
        for name in sample.get("metrics") or []:
            if isinstance(sample.get(name), (int, float)):
                row[name] = sample[name]
        return json.loads(json.dumps(row, default=str))
