"""deft compare: one run per objective (and seed), evaluation, tables with intervals, hashes that
decide what is redone, validation before any model loads; grids."""

import json

import pytest

from deft.analysis.intervals import mean_interval, paired_difference, t_quantile
from deft.analysis.tables import build_table, format_differences, format_markdown
from deft.cli.main import main
from deft.recipes.compare import parse_seeds, run_name


def _ff(em, jw):
    return {"figfont": {"exact": em, "jaro_winkler": jw, "k": 1}}


def test_one_seed_table_marks_best_bold_and_second_underlined():
    table = build_table({"Base": _ff(0.0, 0.30), "nll": _ff(0.25, 0.60), "deft": _ff(0.50, 0.55)})
    assert [c.title for c in table.columns][:3] == ["figfont EM", "figfont JW", "Avg"]
    assert table.cell("deft", "Avg") == (pytest.approx(52.5), None, 1)
    md = format_markdown(table)
    assert "| deft | **50.00** | <u>55.00</u> | **52.50** | 1 |" in md
    assert "| nll | <u>25.00</u> | **60.00** | <u>42.50</u> | 1 |" in md
    assert "One seed" in md
    tied = format_markdown(build_table({"a": _ff(0.0, 0.1), "b": _ff(0.0, 0.2)}))
    assert "| a | 0.00 |" in tied and "| b | 0.00 | **20.00** |" in tied  # a column where all tie: no mark
    math = build_table({"a": {"math500": {"average_at_k": 0.4, "k": 16}}})
    assert [c.title for c in math.columns][:2] == ["math500 Avg@16", "Avg"]


def test_intervals_on_fixed_numbers():
    assert t_quantile(1) == 12.706 and t_quantile(2) == 4.303
    assert t_quantile(60) == pytest.approx(2.000, abs=1e-3) and t_quantile(200) == pytest.approx(1.972, abs=1e-3)
    mean, half = mean_interval([1.0, 2.0, 3.0])  # s = 1, t_{0.975,2} = 4.303
    assert mean == 2.0 and half == pytest.approx(4.303 / 3 ** 0.5)
    assert mean_interval([5.0]) == (5.0, None)
    d = paired_difference({0: 3.0, 1: 5.0, 2: 4.0}, {0: 1.0, 1: 2.0, 2: 3.0})  # differences 2, 3, 1
    assert d == (pytest.approx(2.0), pytest.approx(4.303 / 3 ** 0.5), 3)
    assert paired_difference({0: 3.0, 1: 5.0}, {None: 1.0})[0] == pytest.approx(3.0)  # a base measured once
    assert parse_seeds("0, 1,2") == [0, 1, 2]
    with pytest.raises(ValueError):
        parse_seeds("0,0")


def test_seeded_table_marks_only_differences_outside_the_noise():
    h = lambda nll: {"heldout": {"heldout_nll": nll, "drift_kl": 0.1 * nll}}  # noqa: E731
    results = {
        "Base": {**_ff(0.0, 0.30), **h(3.0)},
        # nll and deft: deft's JW is higher on every seed by 5 +- 1 points -> outside the noise
        "nll": {0: {**_ff(0.10, 0.50), **h(2.0)}, 1: {**_ff(0.30, 0.52), **h(2.1)}, 2: {**_ff(0.20, 0.54), **h(2.2)}},
        "deft": {0: {**_ff(0.30, 0.55), **h(2.05)}, 1: {**_ff(0.10, 0.58), **h(2.0)}, 2: {**_ff(0.20, 0.58), **h(2.3)}},
    }
    table = build_table(results)
    assert table.seeds("nll") == 3 and table.seeds("Base") == 1
    mean, half, n = table.cell("deft", "figfont JW")
    assert (mean, n) == (pytest.approx(57.0), 3)
    assert half == pytest.approx(4.303 * (3 ** 0.5) / 3 ** 0.5)  # values 55, 58, 58: s = sqrt(3)
    md = format_markdown(table)
    row = next(line for line in md.splitlines() if line.startswith("| deft |"))
    cells = row.split(" | ")
    # EM: deft - nll differences +20, -20, 0 -> inside the noise: no bold, means 20.00 both
    assert cells[1] == "20.00 ± 24.84"
    # JW: deft - nll = 5, 6, 4 -> mean 5 +- 2.48: bold
    assert cells[2].startswith("**57.00 ± ")
    # heldout_nll (lower is better): Base 3.0 is worst; nll 2.1 vs deft 2.1167 -> tie within noise, no marks
    assert "**" not in row.split(" | ")[4]
    assert "intervals" in md or "95% interval" in md
    diff = format_differences(table)
    deft_row = next(line for line in diff.splitlines() if line.startswith("| deft |"))
    # EM differences 20, -20, 0: s = 20, half-width 4.303 * 20 / sqrt(3) = 49.69, no star
    assert "| deft | +0.00 ± 49.69 | +5.00 ± 2.48* |" in deft_row


def test_figure1_shares_are_percent_columns_learned_higher_forgotten_lower_is_better():
    h = lambda learned, forgotten: {"heldout": {"heldout_nll": 2.0, "learned": learned, "forgotten": forgotten}}  # noqa: E731
    table = build_table({"Base": {"heldout": {"heldout_nll": 3.0}}, "nll": h(0.40, 0.10), "deft": h(0.55, 0.05)})
    assert table.cell("deft", "learned %") == (pytest.approx(55.0), None, 1)
    assert table.cell("Base", "learned %") is None
    md = format_markdown(table)
    assert "| learned % | forgotten % |" in md
    rows = {line.split(" | ")[0][2:]: line.split(" | ")[3:5] for line in md.splitlines() if line.startswith("| ")}
    assert rows["deft"] == ["**55.0**", "**5.0**"]  # more learned, less forgotten: both best
    assert rows["nll"] == ["40.0", "10.0"] and rows["Base"] == ["-", "-"]


def test_run_names_are_directory_safe():
    assert run_name("power:alpha=0.5") == "power-alpha0.5"
    assert run_name("nll[p>=0.1]") == "nll-p-ge0.1" != run_name("nll[p<=0.1]")


def _args(tiny_model_dir, figfont_records, out, *extra, objectives="nll,deft"):
    return ["compare", "--model", str(tiny_model_dir), "--data", str(figfont_records), "--objectives", objectives,
            "--benchmark", "figfont", "--n", "2", "--max-new-tokens", "4", "--out", str(out), "--no-forgetting",
            *extra]


def test_compare_end_to_end_reuses_unchanged_and_redoes_changed(tiny_model_dir, figfont_records, tmp_path, capsys):
    args = _args(tiny_model_dir, figfont_records, tmp_path, "max_steps=2", "batch_size=2", "max_length=256",
                 objectives="deft")
    assert main(args) == 0
    md = (tmp_path / "results.md").read_text()
    for method in ("Base", "deft"):
        assert f"| {method} |" in md
    csv_head = (tmp_path / "results.csv").read_text().splitlines()[0]
    assert csv_head.startswith("method,figfont EM,figfont JW,Avg,heldout_nll,heldout_mean_p,drift_kl,retained_nll,learned %,forgotten %,seeds")
    assert (tmp_path / "results.csv").read_text().splitlines()[1].startswith("Base,")
    assert (tmp_path / "training_curves.png").exists() and (tmp_path / "gate_curves.png").exists()
    recorded = json.loads((tmp_path / "runs" / "deft" / "inputs.json").read_text())
    assert recorded["settings"]["max_steps"] == 2 and len(recorded["hash"]) == 64
    before = (tmp_path / "runs" / "deft" / "final" / "model.safetensors").stat().st_mtime
    capsys.readouterr()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count("already done, inputs unchanged") == 3  # the run, its evaluation, the base evaluation
    assert (tmp_path / "runs" / "deft" / "final" / "model.safetensors").stat().st_mtime == before
    # max_steps 2 -> 3: the run and its evaluation are redone, the base evaluation is reused
    assert main([a.replace("max_steps=2", "max_steps=3") for a in args]) == 0
    out = capsys.readouterr().out
    assert "deft: training: redoing (max_steps 2 -> 3)" in out
    assert "base: evaluation already done" in out and "deft: evaluation: redoing (run " in out
    assert json.loads((tmp_path / "runs" / "deft" / "summary.json").read_text())["steps"] == 3


def test_bad_inputs_are_refused_before_any_model_loads(tiny_model_dir, figfont_records, tmp_path, capsys, monkeypatch):
    import deft.model

    def no_load(*a, **k):
        raise AssertionError("a model was loaded before validation")

    monkeypatch.setattr(deft.model, "load_model", no_load)
    monkeypatch.setattr("deft.eval.runner.evaluate", no_load)
    cases = [
        (["--data", str(tmp_path / "missing.jsonl")], "missing.jsonl"),
        (["--objectives", "nll,nosuch"], "nosuch"),
        (["--objectives", "nll,kd"], "teacher"),
        (["lr=-1"], "lr"),
        (["nosuch_option=1"], "nosuch_option"),
        (["--benchmark", "nosuchbench"], "nosuchbench"),
        (["--heldout", str(tmp_path / "nope.jsonl")], "nope.jsonl"),
        (["--seeds", "0,x"], "seeds"),
    ]
    base = _args(tiny_model_dir, figfont_records, tmp_path / "o")
    for extra, match in cases:
        args = list(base)
        for flag_value in [extra[i:i + 2] for i in range(0, len(extra), 2)] if extra[0].startswith("--") else []:
            i = args.index(flag_value[0]) if flag_value[0] in args else None
            if i is not None:
                args[i + 1] = flag_value[1]
            else:
                args += flag_value
        if not extra[0].startswith("--"):
            args += extra
        assert main(args) == 2, extra
        err = capsys.readouterr().err
        assert match in err and err.count("\n") == 1, (extra, err)
    assert not (tmp_path / "o" / "runs").exists()


def test_compare_with_seeds_and_heldout_end_to_end(tiny_model_dir, figfont_records, tmp_path, capsys):
    heldout = tmp_path / "heldout.jsonl"
    heldout.write_text("\n".join(figfont_records.read_text().splitlines()[:4]) + "\n")
    args = ["compare", "--model", str(tiny_model_dir), "--data", str(figfont_records), "--objectives", "nll,deft",
            "--heldout", str(heldout), "--seeds", "0,1", "--out", str(tmp_path / "s"),
            "max_steps=2", "batch_size=4", "max_length=256", "lr=1e-2", "warmup_ratio=0"]
    assert main(args) == 0
    out = tmp_path / "s"
    assert (out / "runs" / "deft" / "seed1" / "final").is_dir()
    rows = {r.split(",")[0]: r.split(",") for r in (out / "results.csv").read_text().splitlines()}
    head = rows["method"]
    assert list(rows)[1] == "Base"
    for col in ("heldout_nll", "heldout_mean_p", "drift_kl", "retained_nll", "seeds"):
        assert col in head
    seeds, nll, ci = head.index("seeds"), head.index("heldout_nll"), head.index("heldout_nll ci95")
    assert rows["nll"][seeds] == "2" and rows["Base"][seeds] == "1"
    # training on figfont records lowers the NLL of held-out figfont responses below the base model's
    assert float(rows["nll"][nll]) < float(rows["Base"][nll]) and float(rows["deft"][nll]) < float(rows["Base"][nll])
    assert rows["nll"][ci] and not rows["Base"][ci]  # an interval over 2 seeds; none for the base model
    per_seed = [json.loads((out / "eval" / "nll" / f"seed{s}" / "heldout.json").read_text())["metrics"]
                for s in (0, 1)]
    assert float(rows["nll"][nll]) == pytest.approx(sum(m["heldout_nll"] for m in per_seed) / 2, rel=1e-5)
    assert 0 <= per_seed[0]["learned"] <= 1
    md = (out / "results.md").read_text()
    assert "Paired difference to `nll`" in md and "| deft |" in md


def test_grid_file(tiny_model_dir, figfont_records, tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(json.dumps({
        "out": str(tmp_path / "grid"), "models": [str(tiny_model_dir)], "datasets": {"ff": str(figfont_records)},
        "objectives": ["nll"], "benchmarks": ["figfont"], "base": False, "forgetting": False,
        "train": {"max_steps": 1, "batch_size": 2, "max_length": 256}, "eval": {"size": 2, "max_new_tokens": 4},
    }))
    assert main(["compare", "--grid", str(grid)]) == 0
    assert "| nll |" in (tmp_path / "grid" / "results.md").read_text()


@pytest.mark.parametrize("args,match", [
    (["compare", "--benchmark", "figfont"], "--data"),
    (["compare", "--grid", "/nonexistent.yaml"], "not found"),
])
def test_compare_errors(args, match, capsys):
    assert main(args) == 2
    assert match in capsys.readouterr().err
