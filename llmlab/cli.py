"""The `llmlab` command: run | table | ls | reproduce.

    llmlab run [hydra overrides]         one job, or a sweep with -m
    llmlab ls [group]                    config groups and their choices
    llmlab table <experiment>            a paper table from the results under outputs/
    llmlab reproduce <experiment>        the experiment's sweep, then its table

Hub access is off unless the user turns it on (HF_HUB_OFFLINE=0): a hub request on a machine
without network would otherwise retry for ~25 s before failing.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from llmlab.paths import CONF_DIR

USAGE = __doc__.split("\n\n")[1]
HYDRA_FLAGS = ("-m", "--multirun", "--cfg", "-c", "--help", "-h", "--hydra-help", "-sc", "--shell-completion",
               "--info", "-i", "--resolve", "-p", "--package", "-cp", "-cn", "--config-name", "--config-path",
               "--run", "-r", "--version", "--experimental-rerun", "--config-dir", "-cd")


def _offline_defaults() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    _offline_defaults()
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    command, rest = argv[0], argv[1:]
    if command == "run":
        sys.exit(run(rest))
    if command.startswith("-") and command.split("=")[0] in HYDRA_FLAGS:  # e.g. `llmlab -sc install=bash`
        sys.exit(run(argv))
    if command == "ls":
        sys.exit(ls(rest))
    if command == "table":
        from llmlab.tables import main as table_main

        sys.exit(table_main(rest))
    if command == "reproduce":
        sys.exit(reproduce(rest))
    print(f"llmlab: unknown command {command!r}. Commands: run, ls, table, reproduce.\n{USAGE}", file=sys.stderr)
    sys.exit(2)


def _completion_line_without_run() -> None:
    """Shell completion asks Hydra with COMP_LINE="llmlab run method=sn": Hydra strips only the
    program name, so drop the `run` subcommand too (and move the cursor back by its width)."""
    line = os.environ.get("COMP_LINE")
    if not line:
        return
    words = line.split(" ")
    if len(words) > 1 and words[1] == "run":
        os.environ["COMP_LINE"] = " ".join(words[:1] + words[2:])
        point = os.environ.get("COMP_POINT")
        if point and point.isdigit():
            os.environ["COMP_POINT"] = str(max(0, int(point) - len("run ")))


def run(overrides: list[str]) -> int:
    """`llmlab run`: one job, or a sweep with -m. Returns the exit status (0 ok, 1 a job failed, 2 bad input).

    Hydra's own errors (an unknown config name, an unparsable override, a key that does not
    exist, a value of the wrong type) come back as one paragraph naming the key and the valid
    choices; HYDRA_FULL_ERROR=1 shows Hydra's full traceback instead.
    """
    import hydra
    from omegaconf import DictConfig

    from llmlab import sweep

    status = {"code": 0}
    overrides = normalize_overrides(overrides)
    _completion_line_without_run()
    previous = os.environ.get("HYDRA_FULL_ERROR")
    full_error = previous == "1"
    saved_argv, sys.argv = sys.argv, ["llmlab"] + overrides

    @hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
    def job(cfg: DictConfig) -> None:
        status["code"] = max(status["code"], run_job(cfg))

    sweep.LAST_SUMMARY = None
    sweep.CURRENT_SWEEP_DIR = None
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises instead of printing; we explain below
    try:
        job()
    except KeyboardInterrupt:
        if sweep.CURRENT_SWEEP_DIR is None or not Path(sweep.CURRENT_SWEEP_DIR).exists():
            raise
        text, _ = sweep.summarize(sweep.CURRENT_SWEEP_DIR)
        print(f"llmlab: interrupted. Every finished job is kept; run the same command again to finish the rest.\n"
              f"{text}", file=sys.stderr, flush=True)
        return 130
    except Exception as err:
        if full_error:
            raise
        return report_error(err, overrides)
    finally:
        sys.argv = saved_argv
        if previous is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = previous
    summary = sweep.LAST_SUMMARY
    if summary is not None and (summary["failed"] or summary["incomplete"]):
        return 1
    return status["code"]


def normalize_overrides(overrides: list[str]) -> list[str]:
    """`+rerun=true` (append) on a run setting that config.yaml already has means set it: `++rerun=true`;
    `+experiment=x` (the older spelling) means `experiment=x`."""
    from omegaconf import OmegaConf

    try:
        settings = {k for k in OmegaConf.load(CONF_DIR / "config.yaml") if k not in ("defaults", "hydra")}
    except Exception:  # pragma: no cover - a broken config.yaml is reported by Hydra itself
        return overrides
    out = []
    for o in overrides:
        key = o[1:].split("=", 1)[0]
        if o.startswith("+experiment=") or o.startswith("++experiment="):
            out.append(o.lstrip("+"))  # `experiment` is in config.yaml's defaults list: choosing it is a plain override
            continue
        out.append("+" + o if o.startswith("+") and not o.startswith("++") and "=" in o and key in settings else o)
    return out


def report_error(err: BaseException, overrides: list[str] = ()) -> int:
    """Print an error raised by Hydra or a launcher as one paragraph on stderr; return the exit status."""
    import traceback

    from llmlab import record, sweep

    text = explain_hydra_error(err, overrides)
    if text is not None:
        print(f"llmlab: {text}", file=sys.stderr, flush=True)
        return 2
    first = (str(err).strip().splitlines() or [""])[0]
    sweep_dir = sweep.CURRENT_SWEEP_DIR
    if sweep_dir is not None and Path(sweep_dir).exists():  # a launcher died mid-sweep (worker killed, node lost)
        tb_path = Path(sweep_dir) / "sweep_traceback.txt"
        record.atomic_write_text(tb_path, "".join(traceback.format_exception(type(err), err, err.__traceback__)))
        summary, _ = sweep.summarize(sweep_dir)
        print(f"llmlab: the sweep stopped early ({type(err).__name__}: {first}). Every finished job is kept; "
              f"run the same command again to finish the rest (complete jobs are skipped). "
              f"(traceback: {tb_path})\n{summary}", file=sys.stderr, flush=True)
        return 1
    print(f"llmlab: {type(err).__name__}: {first} (set HYDRA_FULL_ERROR=1 for the traceback)", file=sys.stderr,
          flush=True)
    return 1


def explain_hydra_error(err: BaseException, overrides: list[str] = ()) -> str | None:
    """One paragraph for a Hydra composition/override error; None for anything else."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
    from omegaconf import DictConfig
    from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

    if isinstance(err, MissingConfigException):
        missing = err.missing_cfg_file or ""
        group, _, choice = missing.rpartition("/")
        if group and err.options:
            listing = f" (`llmlab ls {group}` describes each)" if not group.startswith("hydra/") else ""
            plus = "+" if any(o.startswith(f"+{group}=") for o in overrides) else ""
            return (f"unknown {group} {choice!r}. Valid choices: {', '.join(err.options)}{listing}. "
                    f"Set {plus}{group}=<choice>.")
        if group:
            return (f"there is no config {missing}.yaml (in {CONF_DIR} or the search path); "
                    f"a config group takes one choice name, e.g. {group}=<name>.")
        return _one_paragraph(str(err))
    if isinstance(err, OverrideParseException):
        return (f"could not parse the override {err.override!r} ({_one_paragraph(err.message)}). Overrides look "
                f"like key=value, group=choice, +new.key=value or ++key=value; a sweep (with -m) is key=a,b,c; "
                f"quote a value with spaces or brackets, e.g. 'task.question=\"a b\"' or 'task.depths=[0,50]'.")
    if isinstance(err, ConfigCompositionException):
        cause = err.__cause__
        if isinstance(cause, OmegaConfBaseException) and getattr(cause, "full_key", None):
            key = cause.full_key
            parent = cause.parent_node
            valid = [str(k) for k in parent.keys() if not str(k).startswith("_") and k != "hydra"] \
                if isinstance(parent, DictConfig) else []
            where = key.rsplit(".", 1)[0] if "." in key else "the top level"
            msg = (cause.msg or str(cause)).splitlines()[0]
            if isinstance(cause, (ConfigKeyError, AttributeError)) or "not in struct" in msg:
                keys = f" Valid keys under {where}: {', '.join(valid)}." if valid else ""
                return (f"{key}: there is no such setting.{keys} (A group choice is group=<name>; to add a new "
                        f"key anyway, use +{key}=<value>.)")
            if isinstance(cause, ValidationError):
                return (f"{key}={cause.value!r} is not valid: {msg}. ({cause.object_type_str} declares {key} "
                        f"with a fixed type; give a value of that type.)")
            return f"{key}: {msg}"
        text = str(err)
        if "already at" in text and "++" in text:
            key = text.split("already at", 1)[1].split("'")[1]
            return (f"{key} already exists, so +{key}=... (append) does not apply: set it with {key}=<value> "
                    f"(or ++{key}=<value>).")
        return _one_paragraph(text)
    return None


def _one_paragraph(text: str) -> str:
    """Hydra's multi-line message as one paragraph, without the search-path listing and doc links."""
    lines = []
    for line in str(text).splitlines():
        if line.startswith("Config search path") or line.strip().startswith("provider="):
            continue
        if line.startswith("See https://hydra.cc") or not line.strip():
            continue
        lines.append(line.strip())
    return " ".join(lines)


def run_job(cfg) -> int:
    """One job under Hydra; returns its exit status.

    A failure prints one paragraph on stderr (the message; for an unexpected error its type);
    the traceback goes to the job's log (job.log) and traceback.txt, and the sweep goes on.
    """
    from hydra.core.hydra_config import HydraConfig

    from llmlab import runner
    from llmlab.errors import UserError

    try:
        runner.run(cfg)
        return 0
    except KeyboardInterrupt:
        raise
    except Exception as err:
        _log_traceback(err)
        out = HydraConfig.get().runtime.output_dir
        kind = "" if isinstance(err, UserError) else f"{type(err).__name__}: "
        print(f"llmlab: {kind}{err}\n(traceback: {out}/traceback.txt and job.log)", file=sys.stderr, flush=True)
        return 2 if isinstance(err, UserError) else 1


def _log_traceback(err: BaseException) -> None:
    """Write the traceback to the job's log files only (not the console)."""
    import logging
    import traceback

    text = "".join(traceback.format_exception(type(err), err, err.__traceback__)).rstrip()
    entry = logging.LogRecord("llmlab", logging.ERROR, __file__, 0, "job failed:\n%s", (text,), None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            try:
                handler.handle(entry)
            except Exception:  # pragma: no cover - the log is a convenience; traceback.txt has it too
                pass


def describe(path: Path) -> str:
    """The one-line description of a config file: its first comment line not starting with '@'."""
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("#") and not line.lstrip("# ").startswith("@"):
            return line.lstrip("# ").strip()
        if line and not line.startswith("#"):
            break
    return ""


# launchers the installed Hydra plugins provide (conf/hydra/launcher/ adds presets over them)
PLUGIN_LAUNCHERS = {
    "basic": "one job after another in this process (the default)",
    "joblib": "parallel processes on this machine (hydra.launcher.n_jobs; -1: one per core)",
    "submitit_local": "each job in its own process via submitit (the SLURM code path, locally)",
    "submitit_slurm": "SLURM via submitit, plugin defaults (see slurm for a documented preset)",
}


def ls(args: list[str]) -> int:
    groups = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name != "hydra") + ["hydra/launcher"]
    wanted = args or groups
    for group in wanted:
        gdir = CONF_DIR / group
        if not gdir.is_dir():
            print(f"llmlab: no config group {group!r}. Groups: {', '.join(groups)}.", file=sys.stderr)
            return 2
        print(f"{group}:")
        entries = {f.stem: describe(f) for f in sorted(gdir.glob("*.yaml"))}
        if group == "hydra/launcher":
            entries = dict(sorted({**PLUGIN_LAUNCHERS, **entries}.items()))
        width = max((len(name) for name in entries), default=0)
        for name, text in entries.items():
            print(f"  {name:<{width}}  {text}")
    return 0


def reproduce(args: list[str]) -> int:
    if not args:
        print("llmlab reproduce <experiment> [overrides]; experiments: "
              + ", ".join(sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))), file=sys.stderr)
        return 2
    name, overrides = args[0], args[1:]
    code = run(["-m", f"experiment={name}", *overrides])
    from llmlab.tables import main as table_main

    grid = [o for o in overrides if "=" in o and not o.startswith("-")]  # the same scale/models decide the grid
    roots = [o.split("=", 1)[1] for o in grid if o.startswith("output_root=")]   # the table reads where the sweep wrote
    return max(code, table_main([*(["--root", roots[-1]] if roots else []), name, *grid]))


if __name__ == "__main__":
    main()
