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

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
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


def run(overrides: list[str]) -> int:
    import hydra
    from omegaconf import DictConfig

    from llmlab import sweep

    status = {"code": 0}
    sys.argv = ["llmlab"] + overrides

    @hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
    def job(cfg: DictConfig) -> None:
        status["code"] = max(status["code"], run_job(cfg))

    sweep.LAST_SUMMARY = None
    job()
    summary = sweep.LAST_SUMMARY
    if summary is not None and (summary["failed"] or summary["incomplete"]):
        return 1
    return status["code"]


def run_job(cfg) -> int:
    """One job under Hydra; returns its exit status. Errors are reported in one paragraph."""
    import logging

    from hydra.core.hydra_config import HydraConfig

    from llmlab import runner, sweep
    from llmlab.errors import UserError

    try:
        results = runner.run(cfg)
        if results.get("skipped"):
            out_dir = Path(HydraConfig.get().runtime.output_dir)
            from llmlab import record

            record.write_json(out_dir / sweep.SKIPPED, {"signature": results.get("signature"),
                                                        "result": results.get("out_dir")})
        return 0
    except KeyboardInterrupt:
        raise
    except Exception as err:
        logging.getLogger("llmlab").debug("job failed", exc_info=True)
        out = HydraConfig.get().runtime.output_dir
        kind = "" if isinstance(err, UserError) else f"{type(err).__name__}: "
        print(f"llmlab: {kind}{err}\n(traceback: {out}/traceback.txt)", file=sys.stderr, flush=True)
        return 2 if isinstance(err, UserError) else 1


def describe(path: Path) -> str:
    """The one-line description of a config file: its first comment line not starting with '@'."""
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("#") and not line.lstrip("# ").startswith("@"):
            return line.lstrip("# ").strip()
        if line and not line.startswith("#"):
            break
    return ""


def ls(args: list[str]) -> int:
    groups = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name != "hydra")
    wanted = args or groups
    for group in wanted:
        gdir = CONF_DIR / group
        if not gdir.is_dir():
            print(f"llmlab: no config group {group!r}. Groups: {', '.join(groups)}.", file=sys.stderr)
            return 2
        print(f"{group}:")
        files = sorted(gdir.glob("*.yaml"))
        width = max((len(f.stem) for f in files), default=0)
        for f in files:
            print(f"  {f.stem:<{width}}  {describe(f)}")
    return 0


def reproduce(args: list[str]) -> int:
    if not args:
        print("llmlab reproduce <experiment> [overrides]; experiments: "
              + ", ".join(sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))), file=sys.stderr)
        return 2
    name, overrides = args[0], args[1:]
    code = run(["-m", f"+experiment={name}", *overrides])
    from llmlab.tables import main as table_main

    return max(code, table_main([name]))


if __name__ == "__main__":
    main()
