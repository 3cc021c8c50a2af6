"""Paper tables from recorded results: `llmlab table <experiment | sweep dir>`.

Reads every complete results.json of the experiment under the outputs root, pivots them as the
experiment's `table:` spec says, and renders Markdown (stdout), CSV and LaTeX files, with the
paper's reported number, the delta and whether it is better or worse (the metric registry knows
which direction is) beside each reproduced one. Results merged from several machines into one
outputs directory are read the same way.

- Every point of the experiment's sweep has a cell: the grid comes from its `hydra.sweeper.params`
  (composed at the scale asked for), so a missing job shows as "–", never as zero or a lost column.
- When several results fill one cell the newest is shown, and a note names the cell, how many
  results there were, and whether their configs differ (signatures).
- Each table states what its values are: the metric, its description and unit, the scale factor.

Spec keys (conf/experiment/<name>.yaml, under `table:`):
  rows      config path naming a row: a group name (method, model, task) means the group
            choice; any other dotted path is looked up in the resolved config
  columns   a list of metric names (or `method_info.<key>`: a fact the method recorded), or {by: <config
            path>, metric: <name>, also: [<metric>, ...]}: one column per value of `by`, then each `also` metric pooled over them (its mean over the row's
            results: FLOPs of a model fine-tuned on each task)
  labels    {column or row: display name};   where {path: value} filter;   group_by [paths]
  scale     multiply metrics;   format  e.g. ".2f";   reported  the paper's numbers
  reported_digits  the decimals the paper prints: a delta compares ours rounded to them (0 = a match)
  over      a config path whose values repeat one cell (seed): the cell shows mean ± sample std;
            repeats  how many a full cell has (fewer is marked "(n=k)");  average  the name of a
            column holding the mean of the row's other columns (per repeat, then mean ± std), or of the
            columns listed in `average_of` (a row lacking one of them has no average)
  reference {path: value}: results matching it are a row of every group (the dense model beside each
            pruner's block) instead of a group of their own; a group key given as "*" matches any value
            (the dense model beside every routing level, which it does not depend on)
  notes     [text, ...]: what a reader must know to read the numbers, printed under the legend
  (a scale's experiment_scale file may add keys under `table:`, e.g. its own `where`)
  plot      {x: <config path>, y: <metric or [metrics]>, line: <config path>, group_by: [paths] (panels; the
            table's groups by default), where: {...}}: a line plot PNG
            of all the experiment's results (the table's `where` does not apply to it); where it draws what the
            table lays out (line = rows, x = the columns' `by`, y = their metric), the paper's numbers are
            dashed lines beside ours

A plain `-m` sweep needs no experiment file: `llmlab table <sweep dir> --rows method --columns
task.context_lengths --metric rouge1_f` (rows/columns default to the swept keys, the metric to
the results' main metric).
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
from llmlab.paths import CONF_DIR
from llmlab.errors import UserError
from llmlab.metrics.registry import Metric
from llmlab.metrics.registry import lookup as registry_lookup

MISSING = "–"


def lookup(results: dict, path: str) -> Any:
    """The value of a config path in a results dict (group choice first, then resolved config,
    then the method's recorded facts for `method_info.<key>`)."""
    if path in results.get("choices", {}):
        return results["choices"][path]
    node: Any = results.get("config", {})
    if path.startswith("method_info."):
        node, path = results.get("method_info", {}), path[len("method_info."):]
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def value_of(results: dict, column: str) -> Any:
    """A column's value: a metric, or a fact the method recorded (`method_info.<key>`, e.g. a teacher's size)."""
    if column.startswith("method_info."):
        return lookup(results, column)
    return results.get("metrics", {}).get(column)


def key(value: Any) -> str:
    """A config value as a table key: a one-item list is its item ([512] -> "512")."""
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    if isinstance(value, str) and value.startswith("[") and value.endswith("]") and "," not in value:
        value = value[1:-1].strip()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


# what each metric computes and its direction, as the results recorded it (results.json `metric_info`)
_RECORDED: dict[str, Metric] = {}


def remember_metric_info(results: list[dict]) -> None:
    for res in results:
        for name, info in (res.get("metric_info") or {}).items():
            if info and info.get("description"):
                _RECORDED[name] = Metric(name, info["description"], info.get("higher_is_better"), info.get("unit", ""))


def metric_entry(name: str) -> Metric | None:
    """A metric's description and direction: from the results that recorded it, else the registry."""
    return _RECORDED.get(name) or registry_lookup(name)


def _same(a: Any, b: Any) -> bool:
    return key(a) == key(b)


# -- the spec and the sweep grid ------------------------------------------------------------------
def experiment_names(conf_dir: Path = CONF_DIR) -> list[str]:
    return sorted(p.stem for p in (conf_dir / "experiment").glob("*.yaml"))


def load_spec(name: str, conf_dir: Path = CONF_DIR, overrides: list[str] = ()) -> dict:
    """The experiment's `table:` spec, with `sweep`: {config path: [values]} of its sweep at the
    scale asked for (overrides such as scale=paper)."""
    path = conf_dir / "experiment" / f"{name}.yaml"
    if not path.exists():
        raise UserError(f"llmlab table: no experiment {name!r}. Experiments: {', '.join(experiment_names(conf_dir))}; "
                        f"or give a sweep directory (llmlab table <dir> --rows ... --columns ... --metric ...).")
    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    spec = raw.get("table")
    if not spec:
        raise UserError(f"llmlab table: {path} has no `table:` spec.")
    spec.setdefault("experiment_name", raw.get("experiment_name", name))
    facts: dict = {}
    spec["sweep"] = sweep_grid(name, conf_dir, raw, list(overrides), facts)
    for key_, value in (facts.get("table") or {}).items():   # a scale may add table keys (its `where`)
        spec.setdefault(key_, value)
    spec.setdefault("scale_name", facts.get("scale"))  # results of another scale belong to another table
    return spec


def sweep_grid(name: str, conf_dir: Path, raw: dict, overrides: list[str], facts: dict | None = None) -> dict[str, list[str]]:
    """{config path: values} of the experiment's sweep, composed with Hydra when the config tree has
    a config.yaml (the scale's experiment_scale file included), else read from the file itself.
    `facts` receives the composed scale's name (`scale`)."""
    params: dict = {}
    swept = {o.split("=", 1)[0].lstrip("+"): o.split("=", 1)[1] for o in overrides if "=" in o and
             len(sweep_values(o.split("=", 1)[0].lstrip("+"), o.split("=", 1)[1])) > 1}  # `-m key=a,b` sweeps
    fixed = [o for o in overrides if o.split("=", 1)[0].lstrip("+") not in swept]
    if (conf_dir / "config.yaml").exists():
        try:
            from hydra import compose, initialize_config_dir

            with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
                cfg = compose("config", overrides=[f"experiment={name}", *fixed], return_hydra_config=True)
                if facts is not None:
                    facts["scale"] = OmegaConf.select(cfg, "scale.name")
                    table = OmegaConf.select(cfg, "table")   # with the scale file's `table:` keys (e.g. where)
                    facts["table"] = OmegaConf.to_container(table, resolve=False) if table is not None else None
                swept_params = OmegaConf.select(cfg, "hydra.sweeper.params")
                params = OmegaConf.to_container(swept_params, resolve=True) if swept_params else {}
        except Exception:  # a grid we cannot compose: the results alone decide the rows and columns
            params = {}
    else:
        params = ((raw.get("hydra") or {}).get("sweeper") or {}).get("params") or {}
    params.update(swept)  # the sweep as it was run on the command line
    return {k: sweep_values(k, v) for k, v in params.items()}


def sweep_values(path: str, value: Any) -> list[str]:
    """The values of one sweep parameter (Hydra's override grammar: a,b,c; [1],[2]; range(...))."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        override = OverridesParser.create().parse_overrides([f"{path}={value}"])[0]
        if override.is_sweep_override():
            return [key(v) for v in override.sweep_string_iterator()]
        return [key(override.get_value_element_as_str())]
    except Exception:
        return [key(v) for v in str(value).split(",")]


# -- collecting and pivoting ----------------------------------------------------------------------
def collect(spec: dict, root: Path, where: dict | None = None) -> list[dict]:
    """Complete results of the spec's experiment under `root` that match `where` (config path: value)."""
    rows, seen = [], set()
    if spec.get("sweep_dir"):
        own = record.iter_results(Path(spec["sweep_dir"]))
        reused = ((p, d) for p, d, _ in record.iter_reused(Path(spec["sweep_dir"])))
    else:
        own = ((p, d) for p, d in record.iter_results(root) if d.get("experiment_name") == spec["experiment_name"])
        reused = ((p, d) for p, d, exp in record.iter_reused(root) if exp == spec["experiment_name"])
    scale = spec.get("scale_name")
    for path, data in (*own, *reused):  # reused: another experiment's identical job, skipped by this one
        if str(path) in seen or any(not _same(lookup(data, k), v) for k, v in (where or {}).items()):
            continue
        if scale and lookup(data, "scale.name") not in (None, scale):  # scale=smoke results stay out of the cpu table
            continue
        seen.add(str(path))
        data["_path"] = str(path)
        rows.append(data)
    return rows


def _column_metric(spec: dict, col: str) -> str:
    columns = spec["columns"]
    return columns["metric"] if isinstance(columns, dict) else col


def pivot(spec: dict, results: list[dict]) -> list[dict]:
    """One table per group: {group, rows, columns, cells{(row, col): value}, conflicts[...]}."""
    group_by = list(spec.get("group_by") or [])
    row_path, columns_spec = spec["rows"], spec["columns"]
    scale = float(spec.get("scale", 1.0))
    sweep = spec.get("sweep") or {}
    where = spec.get("where") or {}
    over = spec.get("over")  # a config path whose values are repeats of one cell (seed): mean ± std
    reference = spec.get("reference") or {}  # {path: value}: results shown as a row of every group (dense model)
    also = [str(m) for m in (columns_spec.get("also") or [])] if isinstance(columns_spec, dict) else []
    groups: dict[tuple, dict] = {}

    def table_for(gkey: tuple) -> dict:
        if gkey not in groups:
            groups[gkey] = {"group": dict(zip(group_by, gkey)), "rows": list(sweep.get(row_path, [])),
                            "columns": [], "cells": {}, "sources": {}, "samples": {}, "spread": {}}
            if isinstance(columns_spec, dict):
                groups[gkey]["columns"] = list(sweep.get(columns_spec["by"], []))
            else:
                groups[gkey]["columns"] = [str(c) for c in columns_spec]
        return groups[gkey]

    # every swept group value gets its table (a group with no result at all still shows its grid)
    swept_groups = [[v for v in sweep.get(g, [])] for g in group_by]
    if group_by and all(swept_groups) and not any(g in where for g in group_by):
        import itertools

        for combo in itertools.product(*swept_groups):
            table_for(tuple(combo))
    for gkey in _reported_groups(spec.get("reported") or {}, len(group_by)):  # the paper's models show too
        table_for(gkey)

    def add(table: dict, res: dict) -> None:
        row = key(lookup(res, row_path))
        if row not in table["rows"]:
            table["rows"].append(row)
        if isinstance(columns_spec, dict):
            by = key(lookup(res, columns_spec["by"]))
            items = [(by, res["metrics"].get(columns_spec["metric"]), False)]
            items += [(str(m), res["metrics"].get(m), True) for m in also]  # pooled over the `by` values
        else:
            items = [(str(c), value_of(res, str(c)), False) for c in columns_spec]
        for col, value, pooled in items:
            if col not in table["columns"]:
                table["columns"].append(col)
            if value is None:
                continue
            rep = key(lookup(res, over)) if over else ""
            if pooled:  # one sample per (repeat, by value): the cell is their mean, not a conflict
                table["samples"].setdefault((row, col), {})[f"{rep}|{by}"] = float(value) * scale
                continue
            table["samples"].setdefault((row, col), {})[rep] = float(value) * scale  # newest wins per repeat
            table["sources"].setdefault((row, col), []).append(res)

    references = []
    for res in sorted(results, key=lambda r: r.get("finished", "")):
        if reference and all(v == "*" or _same(lookup(res, k), v) for k, v in reference.items()):
            references.append(res)
            continue
        add(table_for(tuple(key(lookup(res, g)) for g in group_by)), res)
    for res in references:  # a reference row (the dense model) in every group it matches outside `reference`
        own = tuple(key(lookup(res, g)) for g in group_by)
        matching = [t for gkey, t in groups.items()
                    if all(g in reference or mine == theirs for g, mine, theirs in zip(group_by, own, gkey))]
        for table in matching or [table_for(own)]:
            add(table, res)
    for table in groups.values():
        _summarize_repeats(table, spec)
        table["conflicts"] = []
        for cell, srcs in table["sources"].items():  # several results for one cell (of one repeat)
            by_rep: dict[str, list] = {}
            for src in srcs:
                by_rep.setdefault(key(lookup(src, over)) if over else "", []).append(src)
            table["conflicts"] += [(cell, same) for same in by_rep.values() if len(same) > 1]
        order = spec.get("row_order")
        if order:
            table["rows"].sort(key=lambda r: order.index(r) if r in order else len(order))
        if isinstance(columns_spec, dict):
            last = lambda c: (c == spec.get("average") or c in also, c in also, _num_key(c))
            table["columns"].sort(key=last)  # the `by` columns, the average, then the pooled `also` metrics
        _add_reported_rows(spec, table)
    return [groups[k] for k in sorted(groups, key=lambda g: [_num_key(x) for x in g])]


def _summarize_repeats(table: dict, spec: dict) -> None:
    """Cells from their samples: the value (one repeat) or the mean and sample std over repeats (`over`), and
    the `average` column: per repeat, the mean over the other columns (a repeat lacking one is left out)."""
    average = spec.get("average")
    if average:
        columns_spec = spec.get("columns")
        also = (columns_spec.get("also") or []) if isinstance(columns_spec, dict) else []
        cols = spec.get("average_of") or [c for c in table["columns"] if c != average and c not in also]
        for row in {r for r, _ in table["samples"]}:
            per = [table["samples"].get((row, c), {}) for c in cols]
            common = set.intersection(*(set(p) for p in per)) if per and all(per) else set()
            if common:
                table["samples"][(row, average)] = {rep: sum(p[rep] for p in per) / len(per) for rep in common}
        if average not in table["columns"]:
            table["columns"].append(average)
    for cell, reps in table["samples"].items():
        values = list(reps.values())
        mean = sum(values) / len(values)
        table["cells"][cell] = mean
        if spec.get("over"):
            std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
            table["spread"][cell] = (std, len(values))


def _reported_groups(reported: dict, depth: int) -> list[tuple]:
    """The group keys the paper's numbers are nested under (`reported: {model: {row: {col: v}}}`)."""
    if depth == 0 or not isinstance(reported, dict):
        return []
    if depth == 1:
        return [(key(k),) for k, v in reported.items() if isinstance(v, dict)]
    return [(key(k), *rest) for k, v in reported.items() for rest in _reported_groups(v, depth - 1)]


def _num_key(value: str):
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, str(value))


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
        if key(row) not in table["rows"]:
            table["rows"].append(key(row))
        for col, value in cols.items():
            if key(col) not in table["columns"]:
                table["columns"].append(key(col))
            table["reported"][(key(row), key(col))] = float(value)


# -- rendering ------------------------------------------------------------------------------------
def _fmt(value: float | None, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    return format(value, fmt)


def verdict(metric: str, delta: float) -> str:
    """"better" / "worse" than the paper by the metric's direction ("" when unknown or equal)."""
    entry = metric_entry(metric)
    if entry is None or entry.higher_is_better is None or delta == 0:
        return ""
    return "better" if (delta > 0) == entry.higher_is_better else "worse"


def cell_text(spec: dict, table: dict, row: str, col: str) -> str:
    fmt = spec.get("format", ".2f")
    ours, paper = table["cells"].get((row, col)), table["reported"].get((row, col))
    text = _fmt(ours, fmt)
    if (row, col) in table.get("spread", {}):
        std, n = table["spread"][(row, col)]
        text += f" ± {format(std, fmt)}" + (f" (n={n})" if n != spec.get("repeats", n) else "")
    if paper is not None:
        if ours is None:
            text += f" (paper {format(paper, fmt)})"
        else:
            delta = _delta(ours, paper, spec)
            word = verdict(_column_metric(spec, col), delta)
            text += f" (paper {format(paper, fmt)}, Δ {delta:+{fmt}}{', ' + word if word else ''})"
    return text


def _delta(ours: float | None, paper: float | None, spec: dict) -> float | None:
    """ours - paper at the table's shown precision (a difference the paper's digits cannot show is 0).

    With `reported_digits: d` (the paper prints d decimals) ours is first rounded to d decimals, so 43.45
    against a printed 43.5 is a match, not "-0.05, worse"."""
    if ours is None or paper is None:
        return None
    digits = spec.get("reported_digits")
    if digits is not None:
        ours = round(ours, int(digits))
    delta = float(format(ours - paper, spec.get("format", ".2f").lstrip("+")))
    return 0.0 if delta == 0 else delta


def render_markdown(spec: dict, table: dict) -> str:
    labels = spec.get("labels") or {}
    cols = table["columns"]
    head = [str(labels.get(spec["rows"], spec["rows"]))] + [str(labels.get(c, c)) for c in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in table["rows"]:
        lines.append("| " + " | ".join([str(labels.get(row, row))] + [cell_text(spec, table, row, c) for c in cols]) + " |")
    return "\n".join(lines)


def describe_values(spec: dict) -> str:
    """One line saying what the numbers are: each metric (by its registry entry), unit, scale factor."""
    columns = spec["columns"]
    names = [columns["metric"], *(columns.get("also") or [])] if isinstance(columns, dict) else list(columns)
    entries, unknown = {}, []
    for name in names:
        entry = metric_entry(name)
        if entry is None:
            unknown.append(name)
        else:
            entries.setdefault(entry.name, entry)
    said: dict[str, list[str]] = {}  # metrics that share a description are named together (one ROUGE-L per set)
    for entry in entries.values():
        arrow = {True: "; higher is better", False: "; lower is better", None: ""}[entry.higher_is_better]
        said.setdefault(entry.description + (f" [{entry.unit}]" if entry.unit else "") + arrow, []).append(entry.name)
    parts = [f"{', '.join(names)}: {text}" for text, names in said.items()] + unknown
    scale = float(spec.get("scale", 1.0))
    tail = f" — every value shown x{scale:g}" if scale != 1 else ""
    if spec.get("over"):
        tail += (f" — mean ± sample std over {spec['over']} ({spec.get('repeats', 'all')} per cell"
                 f"{'; (n=k) marks a cell with fewer' if spec.get('repeats') else ''})")
    if spec.get("average"):
        which = f"of {', '.join(spec['average_of'])}" if spec.get("average_of") else "of the row's columns"
        tail += f" — {spec['average']}: the mean {which}, per {spec.get('over') or 'result'}"
    return "Values — " + " | ".join(parts) + tail


def conflict_notes(table: dict, spec: dict | None = None) -> list[str]:
    notes = []
    for (row, col), sources in table["conflicts"]:
        sigs = sorted({s.get("signature") for s in sources})
        differ = "with different configs (signatures " + ", ".join(map(str, sigs)) + ")" if len(sigs) > 1 \
            else "of the same config (re-runs)"
        newest = sources[-1]
        over = (spec or {}).get("over")
        rep = f" {over}={lookup(newest, over)}" if over else ""
        notes.append(f"cell ({row}, {col}){rep}: {len(sources)} results {differ}; showing the newest "
                     f"(finished {newest.get('finished')}, {newest.get('_path')})")
    return notes


def missing_notes(spec: dict, table: dict) -> list[str]:
    """How many cells of our rows (rows with a result, or swept rows) have no result yet."""
    ours = {r for r, _ in table["cells"]} | set((spec.get("sweep") or {}).get(spec["rows"], []))
    sweep = spec.get("sweep") or {}
    swept_group = all(str(v) in sweep.get(g, [str(v)]) for g, v in table["group"].items())
    if not table["cells"] and not swept_group:  # a group only the paper reports (its model is not in this sweep)
        return ["the paper's numbers only: this group's model is not in the sweep at this scale"]
    # a metric column no row has a result for is not what a re-run fills: most likely its task is not in this
    # scale's sweep (columns `by` a swept key are the sweep's own, and a re-run fills them)
    empty = [c for c in table["columns"] if isinstance(spec.get("columns"), list) and table["cells"]
             and not any((r, c) in table["cells"] for r in table["rows"])]
    n = sum((r, c) not in table["cells"] for r in table["rows"] if r in ours for c in table["columns"] if c not in empty)
    notes = []
    if n:
        notes.append(f"{n} cells have no result yet (–): run the same sweep command again to run the missing jobs "
                     f"(complete ones are skipped).")
    if empty:
        labels = spec.get("labels") or {}
        notes.append(f"no result in any row for {', '.join(str(labels.get(c, c)) for c in empty)}: not run at this "
                     f"scale (see the experiment's scale file for why), or not run yet.")
    return notes


def to_csv(spec: dict, tables: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    group_by = list(spec.get("group_by") or [])
    writer.writerow(group_by + ["row", "column", "reproduced", "reported", "delta", "verdict", "std", "n"])
    for table in tables:
        for row in table["rows"]:
            for col in table["columns"]:
                ours, paper = table["cells"].get((row, col)), table["reported"].get((row, col))
                delta = _delta(ours, paper, spec)
                writer.writerow([table["group"][g] for g in group_by] + [
                    row, col, "" if ours is None else ours, "" if paper is None else paper,
                    "" if delta is None else delta, "" if delta is None else verdict(_column_metric(spec, col), delta),
                    *table["spread"].get((row, col), ("", ""))])
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
        out.append(" & ".join([_tex(str(labels.get(spec["rows"], spec["rows"])))] + [_tex(labels.get(c, c)) for c in cols]) + " \\\\\\midrule")
        for row in table["rows"]:
            cells = []
            for col in cols:
                ours, paper = table["cells"].get((row, col)), table["reported"].get((row, col))
                text = "--" if ours is None else format(ours, fmt)
                if (row, col) in table["spread"]:
                    text += f" $\\pm$ {format(table['spread'][(row, col)][0], fmt)}"
                if paper is not None:
                    text += f" ({format(paper, fmt)})"
                cells.append(text)
            out.append(" & ".join([_tex(labels.get(row, row))] + cells) + " \\\\")
        out.append("\\bottomrule\\end{tabular}")
        out.append(f"\\caption{{{_tex(spec['experiment_name'])}: {_tex(caption)}; paper in parentheses}}")
        out.append("\\end{table}\n")
    return "\n".join(out)


def _tex(text: Any) -> str:
    return str(text).replace("_", "\\_").replace("%", "\\%").replace("&", "\\&")


def plot_lines(spec: dict, results: list[dict], path: Path) -> Path | None:
    """A line per `line` value of metric `y` against config `x` (e.g. a KV budget curve); `y` may list several
    metrics: a panel for each (and for each group)."""
    plot = spec.get("plot")
    if not plot or not results:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    group_by = list(plot.get("group_by", spec.get("group_by")) or [])   # panels; the table's groups by default
    metrics = [str(m) for m in plot["y"]] if isinstance(plot["y"], (list, tuple)) else [str(plot["y"])]
    groups: dict[tuple, dict[str, dict[float, float]]] = {}
    for res in results:
        x = lookup(res, plot["x"])
        if x is None:
            continue
        g = tuple(key(lookup(res, k)) for k in group_by)
        for metric in metrics:
            y = value_of(res, metric)
            if y is not None:
                groups.setdefault((*g, metric), {}).setdefault(key(lookup(res, plot["line"])), {})[float(key(x))] = \
                    float(y) * float(spec.get("scale", 1.0))
    if not groups:
        return None
    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 3.6), squeeze=False)
    for ax, (g, lines) in zip(axes[0], sorted(groups.items(), key=lambda kv: (kv[0][:-1], metrics.index(kv[0][-1])))):
        paper = _paper_points(spec, plot, group_by, g)
        for name in sorted(set(lines) | set(paper)):
            label, color = (spec.get("labels") or {}).get(name, name), None
            for points, style in ((lines.get(name), {"marker": "o"}), (paper.get(name), {"marker": "x", "ls": "--"})):
                if points:
                    xs = sorted(points)
                    drawn = ax.plot(xs, [points[x] for x in xs], color=color, label=label, **style)
                    color, label = drawn[0].get_color(), f"{label} (paper)"
                else:
                    label = f"{label} (paper)"
        if plot.get("xscale", "log") == "log":  # a budget curve; `xscale: linear` for e.g. temperatures
            ax.set_xscale("log", base=2)
        ax.set_xlabel(plot.get("xlabel", plot["x"]))
        ax.set_ylabel((spec.get("labels") or {}).get(g[-1], g[-1]))   # the table's label for the metric
        ax.set_title(", ".join(g[:-1]) or spec["experiment_name"], fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _paper_points(spec: dict, plot: dict, group_by: list, panel: tuple) -> dict[str, dict[float, float]]:
    """The paper's numbers as dashed lines beside ours, where the plot draws what the table lays out: a line per
    row (`line` = the table's `rows`), x = the `by` of its columns, y = their metric, panels = its groups."""
    columns = spec.get("columns")
    if not (isinstance(columns, dict) and columns.get("by") == plot["x"] and columns.get("metric") == panel[-1]
            and plot["line"] == spec.get("rows") and group_by == list(spec.get("group_by") or [])):
        return {}
    reported = _reported_for(spec, {"group": dict(zip(group_by, panel[:-1]))})
    out: dict[str, dict[float, float]] = {}
    for row, cols in reported.items():
        for col, value in (cols.items() if isinstance(cols, dict) else ()):
            try:
                out.setdefault(key(row), {})[float(key(col))] = float(value)   # in the units the table shows
            except ValueError:
                continue  # a column that is not a number on the x axis
    return out


# -- building -------------------------------------------------------------------------------------
def render(spec: dict, results: list[dict], title: str) -> tuple[str, list[dict]]:
    remember_metric_info(results)
    tables = pivot(spec, results)
    parts = [title, describe_values(spec)] + [f"Note: {note}" for note in spec.get("notes") or []]
    if not tables:
        parts.append(f"no complete results with experiment_name={spec['experiment_name']!r} yet; "
                     f"run `llmlab run -m experiment={spec['experiment_name']}`.")
    for table in tables:
        if table["group"]:
            parts.append("\n## " + ", ".join(f"{k} = {v}" for k, v in table["group"].items()))
        parts.append(render_markdown(spec, table))
        for note in conflict_notes(table, spec) + missing_notes(spec, table):
            parts.append(f"- {note}")
    return "\n".join(parts) + "\n", tables


def write_outputs(name: str, spec: dict, markdown: str, tables: list[dict], out_dir: Path, plot_results) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    if spec.get("scale_name") not in (None, "cpu"):  # scale=smoke/paper tables never overwrite the cpu one
        name = f"{name}-{spec['scale_name']}"
    files = [out_dir / f"{name}.md", out_dir / f"{name}.csv", out_dir / f"{name}.tex"]
    record.atomic_write_text(files[0], markdown)
    record.atomic_write_text(files[1], to_csv(spec, tables))
    record.atomic_write_text(files[2], to_latex(spec, tables))
    png = plot_lines(spec, plot_results, out_dir / f"{name}.png")
    if png:
        files.append(png)
    return files


def build(name: str, root: Path, out_dir: Path | None = None, conf_dir: Path = CONF_DIR,
          overrides: list[str] = (), wandb: bool = False) -> tuple[str, list[Path]]:
    spec = load_spec(name, conf_dir, overrides)
    results = collect(spec, root, spec.get("where"))
    markdown, tables = render(spec, results, f"# {name} ({len(results)} results under {root})")
    # the plot has its own filter (plot.where): a budget curve spans the kv sizes the table filters to one
    plot_results = collect(spec, root, (spec.get("plot") or {}).get("where"))
    files = write_outputs(name, spec, markdown, tables, Path(out_dir or Path(root) / "tables"), plot_results)
    if wandb:
        from llmlab import tracking

        where = tracking.log_table(name, spec["experiment_name"], cell_rows(spec, tables), files, Path(root))
        if where:
            markdown += where + "\n"
    return markdown, files


def cell_rows(spec: dict, tables: list[dict]) -> list[list]:
    """[group, row, column, ours, paper, delta, verdict] for every cell that has a number (W&B table)."""
    out = []
    for table in tables:
        group = ", ".join(f"{k}={v}" for k, v in table["group"].items())
        for row in table["rows"]:
            for col in table["columns"]:
                ours, paper = table["cells"].get((row, col)), table["reported"].get((row, col))
                if ours is None and paper is None:
                    continue
                delta = _delta(ours, paper, spec)
                out.append([group, row, str((spec.get("labels") or {}).get(col, col)), ours, paper, delta,
                            verdict(_column_metric(spec, col), delta) if delta is not None else ""])
    return out


def build_from_sweep(sweep_dir: Path, rows: str | None, columns: str | None, metric: str | None,
                     group_by: list[str], out_dir: Path | None) -> tuple[str, list[Path]]:
    """A table of a plain `-m` sweep: rows and columns default to the swept keys."""
    sweep_dir = Path(sweep_dir)
    results = [d for _, d in record.iter_results(sweep_dir)] + [d for _, d, _ in record.iter_reused(sweep_dir)]
    if not results:
        raise UserError(f"llmlab table: no complete results under {sweep_dir}.")
    swept = _swept_keys(sweep_dir)
    rows = rows or (swept[0] if swept else "method")
    columns = columns or (swept[1] if len(swept) > 1 else None)
    metric = metric or results[0].get("main_metric")
    if not metric:
        raise UserError("llmlab table: give --metric (the results name no main metric).")
    spec = {"experiment_name": sweep_dir.name, "rows": rows, "group_by": group_by, "format": ".2f",
            "columns": {"by": columns, "metric": metric} if columns else [metric], "sweep_dir": str(sweep_dir),
            "sweep": {k: v for k, v in _sweep_params(sweep_dir).items()}}
    markdown, tables = render(spec, collect(spec, sweep_dir), f"# sweep {sweep_dir} ({len(results)} results)")
    return markdown, write_outputs(sweep_dir.name, spec, markdown, tables, Path(out_dir or sweep_dir / "tables"), [])


def _sweep_params(sweep_dir: Path) -> dict[str, list[str]]:
    """{key: values} of the sweep's `-m` overrides (Hydra's multirun.yaml)."""
    path = Path(sweep_dir) / "multirun.yaml"
    if not path.exists():
        return {}
    cfg = OmegaConf.load(path)
    out = {}
    for override in OmegaConf.to_container(cfg.hydra.overrides.task, resolve=False) or []:
        k, _, v = str(override).lstrip("+").partition("=")
        values = sweep_values(k, v)
        if len(values) > 1:
            out[k] = values
    params = OmegaConf.to_container(cfg.hydra.sweeper.params, resolve=False) or {} if "sweeper" in cfg.hydra else {}
    for k, v in (params or {}).items():
        out.setdefault(k, sweep_values(k, v))
    return out


def _swept_keys(sweep_dir: Path) -> list[str]:
    return list(_sweep_params(sweep_dir))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="llmlab table", description="Render an experiment's table (or a sweep's) "
                                     "from the results under outputs/.")
    parser.add_argument("experiment", help="an experiment name (conf/experiment/) or a sweep directory")
    parser.add_argument("overrides", nargs="*", help="config overrides for the experiment's sweep grid, e.g. scale=paper")
    parser.add_argument("--root", default=None, help="outputs root to read (default: $LLMLAB_OUTPUTS or outputs)")
    parser.add_argument("--out", default=None, help="where to write .md/.csv/.tex (default: <root>/tables)")
    parser.add_argument("--rows", default=None, help="sweep dir: config path of the rows (default: the first swept key)")
    parser.add_argument("--columns", default=None, help="sweep dir: config path of the columns (default: the second)")
    parser.add_argument("--metric", default=None, help="sweep dir: the metric (default: the results' main metric)")
    parser.add_argument("--group-by", default="", help="sweep dir: comma-separated config paths, one table each")
    parser.add_argument("--no-wandb", action="store_true", help="do not log the table to W&B (default: logged, "
                        "offline unless WANDB_MODE=online)")
    args = parser.parse_args(argv)
    import os

    root = Path(args.root or os.environ.get("LLMLAB_OUTPUTS", "outputs"))
    try:
        if Path(args.experiment).is_dir():
            markdown, files = build_from_sweep(Path(args.experiment), args.rows, args.columns, args.metric,
                                               [g for g in args.group_by.split(",") if g], args.out)
        else:
            markdown, files = build(args.experiment, root, args.out, overrides=args.overrides, wandb=not args.no_wandb)
    except UserError as err:
        print(str(err), file=sys.stderr)
        return 2
    sys.stdout.write(markdown)
    print("written: " + ", ".join(str(f) for f in files))
    return 0
