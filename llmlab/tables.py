"""Paper tables from recorded results: `llmlab table <experiment>`.

Reads every complete results.json under the outputs root whose `experiment_name` matches,
pivots them as the experiment's `table:` spec says, and renders Markdown (stdout), CSV and
LaTeX files, with the paper's reported number and the delta beside each reproduced one. A
missing cell shows as "–", never as zero. Results merged from several machines into one
outputs directory are read the same way; when two results fill one cell, the newest wins
and the table says so.

Spec keys (conf/experiment/<name>.yaml, under `table:`):
  rows      config path naming a row: a group name (method, model, task) means the group
            choice; any other dotted path is looked up in the resolved config
  columns   a list of metric names, or {by: <config path>, metric: <name>}
  labels    {column: display name};   where {path: value} filter;   group_by [paths]
  scale     multiply metrics;   format  e.g. ".2f";   reported  the paper's numbers
  plot      {x: <config path>, y: <metric>, line: <config path>, where: {...}}: a line plot PNG
            of all the experiment's results (the table's `where` does not apply to it)
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import sys
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from llmlab import record

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
MISSING = "–"


def lookup(results: dict, path: str) -> Any:
    """The value of a config path in a results dict (group choice first, then resolved config)."""
    if path in results.get("choices", {}):
        return results["choices"][path]
    node: Any = results.get("config", {})
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _same(a: Any, b: Any) -> bool:
    return str(a) == str(b)


def load_spec(name: str, conf_dir: Path = CONF_DIR) -> dict:
    path = conf_dir / "experiment" / f"{name}.yaml"
    if not path.exists():
        names = sorted(p.stem for p in (conf_dir / "experiment").glob("*.yaml"))
        raise SystemExit(f"llmlab table: no experiment {name!r}. Experiments: {', '.join(names)}.")
    cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    spec = cfg.get("table")
    if not spec:
        raise SystemExit(f"llmlab table: {path} has no `table:` spec.")
    spec.setdefault("experiment_name", cfg.get("experiment_name", name))
    return spec


def collect(spec: dict, root: Path, where: dict | None = None) -> list[dict]:
    """Complete results of the spec's experiment under `root` that match `where` (config path: value)."""
    rows, seen = [], set()
    own = ((p, d) for p, d in record.iter_results(root) if d.get("experiment_name") == spec["experiment_name"])
    reused = ((p, d) for p, d, exp in record.iter_reused(root) if exp == spec["experiment_name"])
    for path, data in (*own, *reused):  # reused: another experiment's identical job, skipped by this one
        if str(path) in seen or any(not _same(lookup(data, k), v) for k, v in (where or {}).items()):
            continue
        seen.add(str(path))
        data["_path"] = str(path)
        rows.append(data)
    return rows


def pivot(spec: dict, results: list[dict]) -> list[dict]:
    """One table per group: {group, rows, columns, cells{(row, col): value}, conflicts}."""
    group_by = list(spec.get("group_by") or [])
    row_path = spec["rows"]
    columns_spec = spec["columns"]
    scale = float(spec.get("scale", 1.0))
    groups: dict[tuple, dict] = {}
    for res in sorted(results, key=lambda r: r.get("finished", "")):
        gkey = tuple(str(lookup(res, g)) for g in group_by)
        table = groups.setdefault(gkey, {"group": dict(zip(group_by, gkey)), "rows": [], "columns": [],
                                          "cells": {}, "conflicts": 0})
        row = str(lookup(res, row_path))
        if row not in table["rows"]:
            table["rows"].append(row)
        if isinstance(columns_spec, dict):
            col = str(lookup(res, columns_spec["by"]))
            items = [(col, res["metrics"].get(columns_spec["metric"]))]
        else:
            items = [(str(c), res["metrics"].get(c)) for c in columns_spec]
        for col, value in items:
            if col not in table["columns"]:
                table["columns"].append(col)
            if value is None:
                continue
            if (row, col) in table["cells"]:
                table["conflicts"] += 1  # newest wins (sorted by finish time)
            table["cells"][(row, col)] = float(value) * scale
    for table in groups.values():
        order = spec.get("row_order")
        if order:
            table["rows"].sort(key=lambda r: order.index(r) if r in order else len(order))
        if isinstance(columns_spec, dict):
            table["columns"].sort(key=_num_key)
        _add_reported_rows(spec, table)
    return list(groups.values())


def _num_key(value: str):
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


def _reported_for(spec: dict, table: dict) -> dict:
    reported = spec.get("reported") or {}
    for value in table["group"].values():  # nested by group value(s)
        reported = reported.get(value, {}) if isinstance(reported, dict) else {}
    return reported if isinstance(reported, dict) else {}


def _add_reported_rows(spec: dict, table: dict) -> None:
    reported = _reported_for(spec, table)
    table["reported"] = {}
    for row, cols in reported.items():
        if not isinstance(cols, dict):
            continue
        if str(row) not in table["rows"]:
            table["rows"].append(str(row))
        for col, value in cols.items():
            if str(col) not in table["columns"]:
                table["columns"].append(str(col))
            table["reported"][(str(row), str(col))] = float(value)


def _fmt(value: float | None, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    return format(value, fmt)


def render_markdown(spec: dict, table: dict) -> str:
    fmt = spec.get("format", ".2f")
    labels = spec.get("labels") or {}
    cols = table["columns"]
    head = [spec["rows"]] + [labels.get(c, c) for c in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in table["rows"]:
        cells = [row]
        for col in cols:
            ours = table["cells"].get((row, col))
            paper = table["reported"].get((row, col))
            text = _fmt(ours, fmt)
            if paper is not None:
                delta = "" if ours is None else f", Δ {ours - paper:+{fmt}}"
                text += f" (paper {format(paper, fmt)}{delta})"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def to_csv(spec: dict, tables: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    group_by = list(spec.get("group_by") or [])
    writer.writerow(group_by + ["row", "column", "reproduced", "reported", "delta"])
    for table in tables:
        for row in table["rows"]:
            for col in table["columns"]:
                ours, paper = table["cells"].get((row, col)), table["reported"].get((row, col))
                if ours is None and paper is None:
                    continue
                delta = ours - paper if ours is not None and paper is not None else ""
                writer.writerow([table["group"][g] for g in group_by] + [row, col, "" if ours is None else ours,
                                                                          "" if paper is None else paper, delta])
    return buf.getvalue()


def to_latex(spec: dict, tables: list[dict]) -> str:
    fmt = spec.get("format", ".2f")
    labels = spec.get("labels") or {}
    out = []
    for table in tables:
        cols = table["columns"]
        caption = ", ".join(f"{k}={v}" for k, v in table["group"].items()) or spec["experiment_name"]
        out.append("\\begin{table}[t]\\centering\\small")
        out.append("\\begin{tabular}{l" + "r" * len(cols) + "}\\toprule")
        out.append(" & ".join([_tex(spec["rows"])] + [_tex(labels.get(c, c)) for c in cols]) + " \\\\\\midrule")
        for row in table["rows"]:
            cells = []
            for col in cols:
                ours, paper = table["cells"].get((row, col)), table["reported"].get((row, col))
                text = "--" if ours is None else format(ours, fmt)
                if paper is not None:
                    text += f" ({format(paper, fmt)})"
                cells.append(text)
            out.append(" & ".join([_tex(row)] + cells) + " \\\\")
        out.append("\\bottomrule\\end{tabular}")
        out.append(f"\\caption{{{_tex(spec['experiment_name'])}: {_tex(caption)}; paper in parentheses}}")
        out.append("\\end{table}\n")
    return "\n".join(out)


def _tex(text: Any) -> str:
    return str(text).replace("_", "\\_").replace("%", "\\%").replace("&", "\\&")


def plot_lines(spec: dict, results: list[dict], path: Path) -> Path | None:
    """A line per `line` value of metric `y` against config `x` (e.g. a KV budget curve)."""
    plot = spec.get("plot")
    if not plot or not results:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    group_by = list(spec.get("group_by") or [])
    groups: dict[tuple, dict[str, dict[float, float]]] = {}
    for res in results:
        y = res["metrics"].get(plot["y"])
        x = lookup(res, plot["x"])
        if y is None or x is None:
            continue
        g = tuple(str(lookup(res, k)) for k in group_by)
        groups.setdefault(g, {}).setdefault(str(lookup(res, plot["line"])), {})[float(x)] = float(y) * float(spec.get("scale", 1.0))
    if not groups:
        return None
    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 3.6), squeeze=False)
    for ax, (g, lines) in zip(axes[0], sorted(groups.items())):
        for name, points in sorted(lines.items()):
            xs = sorted(points)
            ax.plot(xs, [points[x] for x in xs], marker="o", label=name)
        ax.set_xscale("log", base=2)
        ax.set_xlabel(plot["x"])
        ax.set_ylabel(plot["y"])
        ax.set_title(", ".join(g) or spec["experiment_name"], fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def build(name: str, root: Path, out_dir: Path | None = None, conf_dir: Path = CONF_DIR) -> tuple[str, list[Path]]:
    spec = load_spec(name, conf_dir)
    results = collect(spec, root, spec.get("where"))
    tables = pivot(spec, results)
    out_dir = Path(out_dir or Path(root) / "tables")
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = [f"# {name} ({len(results)} results under {root})"]
    if not tables:
        parts.append(f"no complete results with experiment_name={spec['experiment_name']!r} yet; "
                     f"run `llmlab run -m +experiment={name}`.")
    for table in tables:
        if table["group"]:
            parts.append("\n## " + ", ".join(f"{k} = {v}" for k, v in table["group"].items()))
        parts.append(render_markdown(spec, table))
        if table["conflicts"]:
            parts.append(f"({table['conflicts']} cells had several results; the newest is shown)")
    markdown = "\n".join(parts) + "\n"
    files = [out_dir / f"{name}.md", out_dir / f"{name}.csv", out_dir / f"{name}.tex"]
    record.atomic_write_text(files[0], markdown)
    record.atomic_write_text(files[1], to_csv(spec, tables))
    record.atomic_write_text(files[2], to_latex(spec, tables))
    # the plot has its own filter (plot.where): a budget curve spans the kv sizes the table filters to one
    png = plot_lines(spec, collect(spec, root, (spec.get("plot") or {}).get("where")), out_dir / f"{name}.png")
    if png:
        files.append(png)
    return markdown, files


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="llmlab table", description="Render an experiment's table from results.")
    parser.add_argument("experiment")
    parser.add_argument("--root", default=None, help="outputs root to read (default: $LLMLAB_OUTPUTS or outputs)")
    parser.add_argument("--out", default=None, help="where to write .md/.csv/.tex (default: <root>/tables)")
    args = parser.parse_args(argv)
    import os

    root = Path(args.root or os.environ.get("LLMLAB_OUTPUTS", "outputs"))
    markdown, files = build(args.experiment, root, args.out)
    sys.stdout.write(markdown)
    print("written: " + ", ".join(str(f) for f in files))
    return 0
