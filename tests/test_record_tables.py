import json

from llmlab import record, tables


def _result(method, kv, metrics, exp="demo", finished="2026-01-01T00:00:00", status="complete"):
    return {"status": status, "signature": f"{method}{kv}", "experiment_name": exp,
            "choices": {"method": method, "model": "m"}, "config": {"method": {"kv_size": kv}},
            "metrics": metrics, "finished": finished}


def _demo_spec(tmp_path, text: str) -> None:
    """conf/experiment/demo.yaml under tmp_path (tables.build reads it with conf_dir=tmp_path / "conf")."""
    conf = tmp_path / "conf" / "experiment"
    conf.mkdir(parents=True)
    (conf / "demo.yaml").write_text(text)


def _build_demo(tmp_path, *results: dict) -> str:
    """The demo table (tables in tmp_path/t) of these results, each in a run directory of its own."""
    root = tmp_path / "outputs"
    for i, res in enumerate(results):
        record.write_json(root / str(i) / "results.json", res)
    md, _ = tables.build("demo", root, tmp_path / "t", conf_dir=tmp_path / "conf")
    return md


def test_signature_ignores_logger_and_paths():
    a = {"model": {"name": "x"}, "method": {"k": 1}, "task": {}, "seed": 0, "limit": 2, "logger": {"name": "wandb"},
         "output_root": "a"}
    b = dict(a, logger={"name": "none"}, output_root="b")
    c = dict(a, seed=1)
    assert record.signature(a) == record.signature(b)
    assert record.signature(a) != record.signature(c)


def test_atomic_write_and_incomplete_results_are_ignored(tmp_path):
    record.write_json(tmp_path / "a" / "results.json", _result("snapkv", 64, {"avg": 1.0}))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "results.json").write_text('{"status": "complete", "metr')  # corrupt (killed mid-write)
    record.write_json(tmp_path / "c" / "results.json", _result("h2o", 64, {"avg": 2.0}, status="failed"))
    found = [p.parent.name for p, _ in record.iter_results(tmp_path)]
    assert found == ["a"]
    assert not list(tmp_path.rglob(".results.json.*"))  # no temp files left behind
    assert record.find_complete("snapkv64", tmp_path) == tmp_path / "a" / "results.json"
    assert record.find_complete("h2o64", tmp_path) is None


def test_table_missing_cells_reported_and_delta(tmp_path):
    _demo_spec(tmp_path,
        "experiment_name: demo\n"
        "table:\n  rows: method\n  columns: {by: method.kv_size, metric: avg}\n  format: '.1f'\n"
        "  reported:\n    snapkv: {'64': 40.0}\n"
        "  plot: {x: method.kv_size, y: avg, line: method}\n")
    md = _build_demo(tmp_path, _result("snapkv", 64, {"avg": 41.5}), _result("snapkv", 128, {"avg": 43.0}),
                     _result("h2o", 64, {"avg": 30.0}), _result("h2o", 64, {"avg": 99.0}, exp="other"))
    lines = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ")}
    assert "41.5 (paper 40.0, Δ +1.5)" in lines["snapkv"]
    assert "43.0" in lines["snapkv"]
    # h2o has no 128 result: shown as missing, never as zero; the other experiment's 99.0 is not read
    assert lines["h2o"].rstrip(" |").endswith("–")
    assert "99.0" not in md and lines["h2o"].split("|")[2].strip() == "30.0"
    csv_text = (tmp_path / "t" / "demo.csv").read_text()
    assert "snapkv,64,41.5,40.0,1.5" in csv_text
    assert (tmp_path / "t" / "demo.tex").read_text().count("\\begin{tabular}") == 1
    assert (tmp_path / "t" / "demo.png").stat().st_size > 1000


def test_table_reported_digits_compare_at_the_papers_precision(tmp_path):
    _demo_spec(tmp_path,
        "experiment_name: demo\n"
        "table:\n  rows: method\n  columns: {by: method.kv_size, metric: avg}\n  format: '.2f'\n"
        "  reported_digits: 1\n  reported:\n    snapkv: {'64': 43.5, '128': 44.4}\n")
    md = _build_demo(tmp_path, _result("snapkv", 64, {"avg": 43.46}), _result("snapkv", 128, {"avg": 44.25}))
    # 43.46 prints as 43.5 in the paper's digits: a match; 44.25 is 44.2 (or 44.3), not the paper's 44.4
    assert "43.46 (paper 43.50, Δ +0.00)" in md
    assert "44.25 (paper 44.40, Δ -0.20)" in md
    csv_text = (tmp_path / "t" / "demo.csv").read_text()
    assert "snapkv,64,43.46,43.5,0.0," in csv_text


def test_table_newest_result_wins_and_is_flagged(tmp_path):
    _demo_spec(tmp_path, "experiment_name: demo\ntable:\n  rows: method\n  columns: [avg]\n")
    root = tmp_path / "outputs"
    record.write_json(root / "machine_a" / "results.json", _result("snapkv", 64, {"avg": 1.0}, finished="2026-01-01T00:00:00"))
    record.write_json(root / "machine_b" / "results.json", _result("snapkv", 64, {"avg": 2.0}, finished="2026-01-02T00:00:00"))
    md, _ = tables.build("demo", root, tmp_path / "t", conf_dir=tmp_path / "conf")
    assert "| snapkv | 2.00 |" in md
    assert "cell (snapkv, avg): 2 results of the same config (re-runs); showing the newest" in md
    assert "machine_b" in md.split("showing the newest")[1]
    json.loads((root / "machine_a" / "results.json").read_text())  # nothing was overwritten


def test_plot_ignores_the_table_filter(tmp_path, monkeypatch):
    _demo_spec(tmp_path,
        "experiment_name: demo\ntable:\n  rows: method\n  columns: [avg]\n  where: {method.kv_size: 64}\n"
        "  plot: {x: method.kv_size, y: avg, line: method}\n")
    root = tmp_path / "outputs"
    record.write_json(root / "1" / "results.json", _result("snapkv", 64, {"avg": 1.0}))
    record.write_json(root / "2" / "results.json", _result("snapkv", 128, {"avg": 2.0}))
    seen = {}
    real = tables.plot_lines

    def spy(spec, results, path):
        seen["n"] = len(results)
        return real(spec, results, path)

    monkeypatch.setattr(tables, "plot_lines", spy)
    md, _ = tables.build("demo", root, tmp_path / "t", conf_dir=tmp_path / "conf")
    assert "| snapkv | 1.00 |" in md and "2.00" not in md
    assert seen["n"] == 2


def test_a_result_reused_by_another_experiment_shows_in_both_tables(tmp_path):
    """Signatures leave the experiment out: a job skipped because another experiment already ran
    the same config counts for the skipping experiment's table too (and only through its marker)."""
    conf = tmp_path / "conf" / "experiment"
    conf.mkdir(parents=True)
    for name in ("demo", "second"):
        (conf / f"{name}.yaml").write_text(f"experiment_name: {name}\ntable:\n  rows: method\n  columns: [avg]\n")
    root = tmp_path / "outputs"
    shared = root / "a" / "results.json"
    record.write_json(shared, _result("snapkv", 64, {"avg": 1.0}))
    record.write_json(root / "b" / "results.json", _result("h2o", 64, {"avg": 3.0}, exp="second"))
    record.write_json(root / "c" / record.SKIPPED, {"signature": "snapkv64", "result": str(shared),
                                                    "experiment_name": "second"})
    record.write_json(root / "d" / record.SKIPPED, {"signature": "stale", "result": str(shared),
                                                    "experiment_name": "second"})  # not that result: ignored
    md, _ = tables.build("second", root, tmp_path / "t", conf_dir=tmp_path / "conf")
    assert "| snapkv | 1.00 |" in md and "| h2o | 3.00 |" in md and "several results" not in md
    md, _ = tables.build("demo", root, tmp_path / "t2", conf_dir=tmp_path / "conf")
    assert "| snapkv | 1.00 |" in md and "h2o" not in md


def test_missing_sweep_points_show_as_missing_and_deltas_have_a_direction(tmp_path):
    """The grid comes from the experiment's sweep: a job that never ran is a "–" cell, not a lost
    column; a sweep value like [512] is labelled 512; Δ says better/worse by the metric's direction."""
    _demo_spec(tmp_path,
        "experiment_name: demo\n"
        "hydra:\n  sweeper:\n    params:\n      method: snapkv,h2o,pyramidkv\n"
        "      task.context_lengths: '[512],[1024]'\n"
        "table:\n  rows: method\n  columns: {by: task.context_lengths, metric: perplexity}\n  format: '.1f'\n"
        "  reported:\n    snapkv: {'512': 10.0}\n    h2o: {'512': 5.0}\n")

    def res(method, length, value):
        r = _result(method, 0, {"perplexity": value})
        r["config"]["task"] = {"context_lengths": [length]}
        r["metric_info"] = {"perplexity": {"description": "exp(mean NLL)", "higher_is_better": False, "unit": ""}}
        return r

    root = tmp_path / "outputs"
    record.write_json(root / "1" / "results.json", res("snapkv", 512, 8.0))
    record.write_json(root / "2" / "results.json", res("h2o", 512, 6.0))
    md, _ = tables.build("demo", root, tmp_path / "t", conf_dir=tmp_path / "conf")
    lines = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ")}
    assert lines["method"].split("|")[2:4] == [" 512 ", " 1024 "]      # labels, not raw lists
    assert "8.0 (paper 10.0, Δ -2.0, better)" in lines["snapkv"]      # perplexity: lower is better
    assert "6.0 (paper 5.0, Δ +1.0, worse)" in lines["h2o"]
    assert lines["pyramidkv"].count("–") == 2 and lines["snapkv"].rstrip(" |").endswith("–")
    assert "4 cells have no result yet" in md and "lower is better" in md


def test_a_plain_sweep_dir_is_tabled_without_an_experiment_file(tmp_path):
    sweep = tmp_path / "sweep"
    (sweep / "0").mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("hydra:\n  overrides:\n    task:\n    - method=snapkv,h2o\n"
                                         "    - method.kv_size=64,128\n")
    for i, (m, kv, v) in enumerate([("snapkv", 64, 1.0), ("snapkv", 128, 2.0), ("h2o", 64, 3.0)]):
        r = _result(m, kv, {"avg": v})
        r["main_metric"] = "avg"
        record.write_json(sweep / str(i) / "results.json", r)
    assert tables.main([str(sweep), "--out", str(tmp_path / "t")]) == 0
    md = (tmp_path / "t" / "sweep.md").read_text()
    lines = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ")}
    assert lines["method"].split("|")[2:4] == [" 64 ", " 128 "]
    assert "1.00" in lines["snapkv"] and "2.00" in lines["snapkv"] and lines["h2o"].rstrip(" |").endswith("–")


def test_an_unknown_experiment_is_bad_input(tmp_path, capsys):
    assert tables.main(["nosuch", "--root", str(tmp_path)]) == 2
    assert "no experiment 'nosuch'" in capsys.readouterr().err


def test_the_table_lands_in_wandb_offline_with_the_same_cells(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    _demo_spec(tmp_path, "experiment_name: demo\ntable:\n  rows: method\n  columns: [avg]\n"
                                    "  reported:\n    snapkv: {avg: 1.5}\n")
    root = tmp_path / "outputs"
    record.write_json(root / "1" / "results.json", _result("snapkv", 64, {"avg": 1.0}))
    record.write_json(root / "2" / "results.json", _result("h2o", 64, {"avg": 3.0}))
    md, _ = tables.build("demo", root, tmp_path / "t", conf_dir=tmp_path / "conf", wandb=True)
    assert "W&B: table logged offline to" in md and "wandb sync" in md
    [written] = list((root / "wandb").rglob("*.table.json"))
    data = json.loads(written.read_text())
    assert data["columns"] == ["group", "row", "column", "ours", "paper", "delta", "verdict"]
    cells = {(r[1], r[2]): (r[3], r[4]) for r in data["data"]}
    assert cells == {("snapkv", "avg"): (1.0, 1.5), ("h2o", "avg"): (3.0, None)}


def test_table_mean_std_over_seeds_and_average_column(tmp_path):
    _demo_spec(tmp_path,
        "experiment_name: demo\n"
        "table:\n  rows: method\n  columns: {by: task, metric: score}\n  over: seed\n  repeats: 3\n"
        "  average: avg\n  format: '.2f'\n  labels: {none: AdamW (none)}\n")
    root = tmp_path / "outputs"

    def res(method, task, seed, score, finished="2026-01-01T00:00:00"):
        return {"status": "complete", "signature": f"{method}{task}{seed}{finished}", "experiment_name": "demo",
                "choices": {"method": method, "task": task}, "config": {"seed": seed}, "metrics": {"score": score},
                "finished": finished}

    n = 0
    for seed, (a, b) in {1: (10.0, 20.0), 2: (12.0, 22.0), 3: (14.0, 30.0)}.items():
        for task, v in (("cola", a), ("stsb", b)):
            n += 1
            record.write_json(root / str(n) / "results.json", res("sam", task, seed, v))
    record.write_json(root / "x" / "results.json", res("sam", "cola", 3, 99.0, finished="2025-01-01T00:00:00"))  # older re-run
    record.write_json(root / "y" / "results.json", res("none", "cola", 1, 5.0))
    md, _ = tables.build("demo", root, tmp_path / "t", conf_dir=tmp_path / "conf")
    lines = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in md.splitlines() if line.startswith("| ")}
    cola, stsb, avg = (c.strip() for c in lines["sam"])
    assert cola == "12.00 ± 2.00"                  # seeds 1-3; the older seed-3 re-run (99) is not averaged in
    assert stsb == "24.00 ± 5.29"
    assert avg == "18.00 ± 3.61"                   # per-seed averages 15, 17, 22
    assert "none" not in lines                     # row labels apply to rows too
    assert lines["AdamW (none)"][0].strip() == "5.00 ± 0.00 (n=1)" and lines["AdamW (none)"][2].strip() == "–"  # no stsb: no average
    assert "mean ± sample std over seed" in md and "cell (sam, cola) seed=3: 2 results" in md



def test_average_of_named_columns_leaves_the_others_out(tmp_path):
    _demo_spec(tmp_path,
        "experiment_name: demo\n"
        "table:\n  rows: method\n  columns: [a/acc, b/acc, ppl, c/acc]\n  average: avg\n  average_of: [a/acc, b/acc]\n"
        "  format: '.1f'\n")
    root = tmp_path / "outputs"
    for n, (method, metrics) in enumerate((("wanda", {"a/acc": 10.0, "b/acc": 30.0, "ppl": 900.0}),
                                           ("magnitude", {"a/acc": 10.0, "ppl": 5.0}))):
        record.write_json(root / str(n) / "results.json", {
            "status": "complete", "signature": str(n), "experiment_name": "demo", "choices": {"method": method},
            "config": {}, "metrics": metrics, "finished": "2026-01-01T00:00:00"})
    md, _ = tables.build("demo", root, tmp_path / "t", conf_dir=tmp_path / "conf")
    lines = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in md.splitlines()
             if line.startswith("| ")}
    assert lines["wanda"] == ["10.0", "30.0", "900.0", "–", "20.0"]  # the perplexity is not averaged in
    assert lines["magnitude"][4] == "–"                             # b/acc missing: no average
    assert "avg: the mean of a/acc, b/acc" in md
    # c/acc has no result in any row (its task not in the sweep): said so, apart from the cells a re-run fills
    assert "no result in any row for c/acc" in md and "2 cells have no result yet" in md  # magnitude: b/acc, avg


def test_also_metrics_are_pooled_over_the_by_columns(tmp_path):
    _demo_spec(tmp_path,
        "experiment_name: demo\n"
        "table:\n  rows: method\n  columns: {by: task, metric: score, also: [gflops]}\n  over: seed\n"
        "  average: avg\n  format: '.1f'\n  notes: [a gap at sequence level is seed noise]\n")
    root = tmp_path / "outputs"
    n = 0
    for seed in (1, 2):
        for task, score, gflops in (("cola", 10.0 * seed, 2.0), ("rte", 30.0 * seed, 4.0)):
            n += 1
            record.write_json(root / str(n) / "results.json", {
                "status": "complete", "signature": str(n), "experiment_name": "demo", "choices": {"method": "meo",
                "task": task}, "config": {"seed": seed}, "metrics": {"score": score, "gflops": gflops},
                "finished": f"2026-01-01T00:00:0{n}"})
    md, _ = tables.build("demo", root, tmp_path / "t", conf_dir=tmp_path / "conf")
    head = [c.strip() for c in next(line for line in md.splitlines() if line.startswith("| method")).split("|")[2:-1]]
    row = [c.strip() for c in next(line for line in md.splitlines() if line.startswith("| meo")).split("|")[2:-1]]
    assert head == ["cola", "rte", "avg", "gflops"]
    assert row[:3] == ["15.0 ± 7.1", "45.0 ± 21.2", "30.0 ± 14.1"]   # the average leaves gflops out
    assert row[3].startswith("3.0 ±") and "results of" not in md     # the mean over tasks; no conflict note
    assert "Note: a gap at sequence level is seed noise" in md

def test_reference_row_in_every_group(tmp_path):
    _demo_spec(tmp_path,
        "experiment_name: demo\n"
        "table:\n  rows: calibration\n  columns: [ppl]\n  group_by: [method, model]\n"
        "  reference: {method: none}\n  labels: {none: dense}\n  format: '.1f'\n")
    root = tmp_path / "outputs"

    def res(method, calibration, model, ppl):
        return {"status": "complete", "signature": f"{method}{calibration}{model}", "experiment_name": "demo",
                "choices": {"method": method, "calibration": calibration, "model": model}, "config": {},
                "metrics": {"ppl": ppl}, "finished": "2026-01-01T00:00:00"}

    for n, r in enumerate([res("wanda", "c4", "m1", 9.0), res("sparsegpt", "c4", "m1", 8.0), res("wanda", "c4", "m2", 7.0),
                           res("none", "none", "m1", 5.0)]):
        record.write_json(root / str(n) / "results.json", r)
    md, _ = tables.build("demo", root, tmp_path / "t", conf_dir=tmp_path / "conf")
    blocks = md.split("## ")[1:]
    assert [b.splitlines()[0] for b in blocks] == ["method = sparsegpt, model = m1", "method = wanda, model = m1",
                                                    "method = wanda, model = m2"]  # no block of its own for none
    assert all("| dense | 5.0 |" in b for b in blocks[:2]) and "dense" not in blocks[2]  # m2 has no dense result
    # "*": the reference matches any value of that group key (the dense model beside every block, m2's too)
    spec = tmp_path / "conf" / "experiment" / "demo.yaml"
    spec.write_text(spec.read_text().replace("{method: none}",
                                                                            '{method: none, model: "*"}'))
    md, _ = tables.build("demo", root, tmp_path / "t2", conf_dir=tmp_path / "conf")
    assert all("| dense | 5.0 |" in b for b in md.split("## ")[1:])


def test_metrics_that_share_a_description_are_described_once():
    from llmlab.metrics.registry import register

    register("test_set_a_score", "the demo score of one set", unit="x100")
    register("test_set_b_score", "the demo score of one set", unit="x100")
    register("test_loss", "the demo loss", higher_is_better=False)
    line = tables.describe_values({"columns": ["test_set_a_score", "test_set_b_score", "test_loss"]})
    assert line.count("the demo score of one set") == 1
    assert "test_set_a_score, test_set_b_score: the demo score of one set [x100]; higher is better" in line
    assert "test_loss: the demo loss; lower is better" in line


def test_a_plot_draws_the_papers_points_where_it_lays_out_the_table():
    spec = {"rows": "method", "columns": {"by": "method.kv_size", "metric": "avg"}, "scale": 100,
            "reported": {"snapkv": {"64": 40.0, "128": 45.5, "full": 50.0}}}
    plot = {"x": "method.kv_size", "y": "avg", "line": "method"}
    # the paper's numbers are in the table's units already (never scaled again); a non-numeric column is no x
    assert tables._paper_points(spec, plot, [], ("avg",)) == {"snapkv": {64.0: 40.0, 128.0: 45.5}}
    assert tables._paper_points(spec, {**plot, "line": "model"}, [], ("avg",)) == {}
    assert tables._paper_points(spec, plot, [], ("other_metric",)) == {}
    grouped = {**spec, "group_by": ["model"], "reported": {"m1": {"snapkv": {"64": 41.0}}}}
    assert tables._paper_points(grouped, plot, ["model"], ("m1", "avg")) == {"snapkv": {64.0: 41.0}}
    assert tables._paper_points(grouped, plot, ["model"], ("m2", "avg")) == {}
