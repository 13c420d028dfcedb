"""The benchmark scripts: ratios, target verdicts and reports of fused_loss.py and train_step.py from
fixed records (benchmarks/report.py), and the GPU suite's CPU dry run end to end
(benchmarks/gpu_suite.sh --device cpu --dry-run)."""

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MiB = 1 << 20


def load(name):
    """A module of benchmarks/ by path (they import each other as top-level modules)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rec(objective, method, time_s, peak_mib, **extra):
    return dict(shape="s", objective=objective, method=method, status="ok", time_s=time_s, time_min_s=time_s,
                peak_bytes=int(peak_mib * MiB), loss_tokens=180, times_s=[time_s], **extra)


def fixed_report(device):
    records = [
        rec("nll", "floor", 1.0, 50),
        rec("nll", "fused", 1.2, 100, paired_ratio=1.1),
        rec("nll", "compiled", 1.05, 80, paired_ratio=1.04),
        rec("nll", "reference", 4.2, 1200),
        rec("nll", "liger", 1.0, 90),
        rec("deft", "fused", 1.3, 100, paired_ratio=1.3),
        rec("deft", "compiled", 1.2, 85, paired_ratio=1.3),
        rec("deft", "reference", 3.0, 800),
        rec("kd", "fused", 1.5, 120),  # no paired ratio: the stand-alone floor case is used
        dict(shape="s", objective="kd", method="compiled", status="n/a", note="the compiled step covers gate ones"),
        rec("kd", "reference", 2.0, 1300),
    ]
    shape = dict(name="s", H=64, V=1000, N=200, repeats=1, warmup=1, ref_target=True)
    env = dict(date="2026-11-30T16:00:00", cpu="x", cpu_cores=2, torch="2.x", device=device)
    return dict(command="python benchmarks/fused_loss.py --shapes s", environment=env, shapes=[shape],
                objectives=["nll", "deft", "kd"], methods=["fused", "compiled", "reference", "floor", "liger"],
                records=records, settings=dict(device=device, dtype="bf16", threads=16))


def test_ratios_and_targets_on_cuda_from_fixed_records():
    report = load("report")
    rows = {r["objective"]: r for r in report.analyse_shape(fixed_report("cuda")["shapes"][0],
                                                            fixed_report("cuda")["records"],
                                                            ["nll", "deft", "kd"], "cuda", 2)}
    nll, deft, kd = rows["nll"]["ratios"], rows["deft"]["ratios"], rows["kd"]["ratios"]
    # the faster of fused and compiled is the best fused method; its paired ratio is the floor ratio
    assert nll["t_floor"] == pytest.approx(1.04) and deft["t_floor"] == pytest.approx(1.3)
    assert nll["t_ref"] == pytest.approx(4.2 / 1.05) and nll["m_ref"] == pytest.approx(1200 / 80)
    assert deft["t_liger_nll"] == pytest.approx(1.2 / 1.0) and deft["m_liger"] == pytest.approx(85 / 90)
    assert kd["t_floor"] == pytest.approx(1.5 / 1.0) and kd["m_ref"] == pytest.approx(1300 / 120)
    verdicts = {o: {k: met for k, (_, met) in r["verdicts"].items()} for o, r in rows.items()}
    assert verdicts["nll"] == {"t_floor": True, "m_liger": True, "t_ref": True, "m_ref": True}
    assert verdicts["deft"] == {"t_floor": False, "t_liger_nll": False, "m_liger": True, "t_ref": False,
                                "m_ref": False}
    assert verdicts["kd"] == {"t_floor": True, "t_ref": False, "m_ref": True}  # 1.5 <= 1.6 for distributions


def test_cpu_targets_and_the_rendered_report(tmp_path):
    report = load("report")
    data = fixed_report("cpu")
    summary = report.write_reports(data, tmp_path / "r.json", tmp_path / "r.csv", tmp_path / "r.md")
    met = {(s["objective"], s["target"]): s["met"] for s in summary}
    # gate objectives' fused / floor <= 1.05 (the faster implementation), distribution objectives' <= 1.25;
    # ref >= 2x slower; ref >= 8x memory
    assert met[("nll", "gate <= 1.05x floor")] and not met[("deft", "gate <= 1.05x floor")]
    assert not met[("kd", "dist. <= 1.25x floor")] and ("kd", "gate <= 1.05x floor") not in met
    assert met[("nll", "ref >= 2x slower")] and met[("deft", "ref >= 2x slower")]
    assert not met[("kd", "ref >= 2x slower")]
    assert met[("kd", "ref >= 8x more mem")]
    # budget = V H 4 + N H 2 + chunk V 4 bytes = 256000 + 25600 + 180 * 4000 (chunk = the 180 loss tokens)
    assert not met[("nll", "fused mem <= 1.5x budget")]
    md = (tmp_path / "r.md").read_text()
    assert md.count("python benchmarks/fused_loss.py --shapes s") == 1  # one re-measure command
    assert ("| deft | 1.3 s / 100 MiB | 1.2 s / 85 MiB | 3 s / 800 MiB | 1 s / 50 MiB | - | 1.30x **missed** | "
            f"{85 * MiB / 1001600:.2f}x **missed** | 2.50x met | 9.41x met |") in md
    assert f"Targets met: {sum(met.values())} of {len(met)}." in md
    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert len(rows) == 11 and rows[1]["peak_mib"] == "100.0" and rows[9]["status"] == "n/a"
    assert json.loads((tmp_path / "r.json").read_text())["summary"] == summary


def test_ratios_beside_another_runs():
    """compare_reports: per shape and objective, this run's fused / floor, memory / budget and
    reference / fused ratios beside the other run's, '-' where that run lacks the case."""
    report = load("report")
    new, old = fixed_report("cpu"), fixed_report("cpu")
    old["records"] = [dict(r, paired_ratio=2.0) if r["objective"] == "nll" and r["method"] == "compiled" else r
                      for r in old["records"] if r["objective"] != "kd"]
    old["environment"]["cpu"] = "OLD CPU"
    text = report.compare_reports(new, old, "old.json")
    lines = text.splitlines()
    assert lines[0] == "ratios now / in old.json (2026-11-30, OLD CPU):" and len(lines) == 5
    nll, deft, kd = lines[2:]
    assert nll.split()[:5] == ["s", "nll", "1.04x", "/", "2.00x"]
    assert deft.split()[:5] == ["s", "deft", "1.30x", "/", "1.30x"]
    assert kd.split()[:5] == ["s", "kd", "1.50x", "/", "-"]


def test_update_merges_the_shapes_objectives_and_methods():
    """--update adds a run's shapes (a re-measured one replaced in place), objectives and methods
    to the results file's lists, so the report renders every case the file holds."""
    fused_loss = load("fused_loss")
    report = dict(shapes=[dict(name="a", N=1), dict(name="b", N=1)], objectives=["nll"], methods=["fused", "floor"])
    fused_loss.merge_lists(report, [dict(name="c", N=2), dict(name="a", N=3)], ["deft", "nll"], ["reference", "fused"])
    assert report["shapes"] == [dict(name="a", N=3), dict(name="b", N=1), dict(name="c", N=2)]
    assert report["objectives"] == ["nll", "deft"] and report["methods"] == ["fused", "floor", "reference"]


def test_bench_smoke_run_on_a_tiny_shape(tmp_path):
    """``make bench``'s command (fused_loss.py --bench) end to end on the tiny shape: every case
    runs and the ratios are printed beside the committed table's (no timing is judged here). The
    cases share one process (``--group shape``; ``make bench`` gives each its own: the same child
    code, one interpreter start each)."""
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fused_loss.py"), "--bench", "--shapes", "tiny",
                           "--repeats", "1", "--warmup", "0", "--threads", "1", "--group", "shape", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["objectives"] == ["nll", "deft", "kd"] and report["methods"] == ["fused", "floor", "reference"]
    statuses = {(r["objective"], r["method"]): r["status"] for r in report["records"]}
    assert statuses == {("nll", "floor"): "ok", **{(o, m): "ok" for o in ("nll", "deft", "kd")
                                                   for m in ("fused", "reference")}}
    assert "ratios now / in " + str(ROOT / "benchmarks" / "results" / "fused_loss_cpu.json") in proc.stdout
    for objective in ("nll", "deft", "kd"):
        assert any(line.split()[:2] == ["tiny", objective] for line in proc.stdout.splitlines()), objective


def train_step_report():
    def ok(case, time_s, peak_mib, rnd=0):
        return dict(case=case, round=rnd, status="ok", time_s=time_s, peak_bytes=int(peak_mib * MiB), loss_first=2.5)

    records = [ok("trl/nll", 2.0, 400), ok("trl/dft", 2.2, 800), ok("deftsft/deft", 2.4, 500),
               ok("deftsft/deft", 2.0, 520, rnd=1), ok("fused/nll", 1.0, 300), ok("fused/deft", 1.02, 310),
               dict(case="plain/deft", round=0, status="timeout", note="exceeded 9 s")]
    env = dict(device="cpu", date="2026-11-30", torch="2.x", transformers="4.x", trl="0.x", peft="0.x", cpu="x",
               cpu_cores=2, torch_threads=2, mem_total_gib=8.0)
    return dict(command="python benchmarks/train_step.py --rows 2", environment=env, model="smollm2-135m",
                batch=dict(rows=2, seq_len=64, prompt_len=16, sha256_16="ab", loss_tokens=94),
                cases=["trl/nll", "trl/dft", "deftsft/deft", "fused/nll", "fused/deft", "plain/deft"], repeats=1,
                warmup=1, rounds=2, records=records, notes=["a note"],
                interleaved={"status": "ok", "steps": {"deftsft/deft": [2.1, 2.2, 2.0], "trl/nll": [2.0, 2.0, 2.0]}})


def test_train_step_targets_and_report_from_fixed_records(tmp_path):
    report = load("report")
    s = report.train_step_summary(train_step_report())
    # medians over rounds, the largest peak; the time ratio paired per interleaved round where there is one
    deftsft = s["cases"]["deftsft/deft"]
    assert deftsft["time_s"] == pytest.approx(2.2) and deftsft["peak_bytes"] == 520 * MiB
    assert (s["cases"]["plain/deft"]["status"], s["cases"]["plain/deft"]["note"]) == ("timeout", "exceeded 9 s")
    targets = {(t["case"], t["what"]): t for t in s["targets"]}
    paired = targets[("deftsft/deft", "time")]
    assert (paired["value"], paired["how"], paired["met"]) == (pytest.approx(1.05), "paired", True)
    peak = targets[("deftsft/deft", "peak")]
    assert (peak["value"], peak["how"], peak["met"]) == (pytest.approx(520 / 800), "peaks", True)
    fused = targets[("fused/deft", "time")]
    assert (fused["value"], fused["how"], fused["met"]) == (pytest.approx(1.02), "medians", True)
    md = report.write_train_step(train_step_report(), tmp_path / "t.json", tmp_path / "t.md")
    assert (tmp_path / "t.md").read_text() == md and md.count("python benchmarks/train_step.py --rows 2") == 1
    assert "| deftsft/deft | 2.20 | 58 | 2.10 | 1.05 | 520 | 0.65 | 2.50000 |" in md  # 128 tokens / 2.2 s
    assert "| plain/deft | timeout: exceeded 9 s |" in md and md.endswith("- a note\n")
    assert json.loads((tmp_path / "t.json").read_text())["records"][0]["case"] == "trl/nll"


def test_shape_specs():
    fused_loss = load("fused_loss")
    qwen, big, custom = fused_loss.parse_shapes("qwen7b,qwen7b:N=32768:repeats=2,8x11x13", 5, 1, "cuda")
    assert (qwen["H"], qwen["V"], qwen["N"], qwen["ref_target"]) == (3584, 152064, 8192, True)
    assert (big["name"], big["N"], big["repeats"], big["ref_target"]) == ("qwen7b:N=32768", 32768, 2, False)
    assert (custom["H"], custom["V"], custom["N"], custom["ref_target"]) == (8, 11, 13, False)
    assert fused_loss.parse_shapes("qwen7b", 5, 1, "cpu")[0]["ref_target"] is False
    with pytest.raises(SystemExit, match="unknown shape"):
        fused_loss.parse_shapes("qwen9b", 1, 1, "cpu")


@pytest.mark.slow
def test_gpu_suite_dry_run_on_cpu(tmp_path):
    """Every method of the suite at a tiny shape on CPU (one objective of each kind), and every
    training-step case on a tiny random model (all in one case process)."""
    pytest.importorskip("reasoning_gym")
    env = dict(os.environ, PYTHON=sys.executable)  # TMPDIR as it is: torch.compile's cache of this machine
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_suite.sh"), "--device", "cpu", "--dry-run",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = list(csv.DictReader((tmp_path / "out" / "fused_loss_cpu.csv").open()))
    objectives = ["nll", "deft", "label_smoothing", "kd"]
    assert len(rows) == 1 + len(objectives) * 5  # one odd shape: the floor, then 5 methods per objective
    got = {(r["shape"], r["objective"], r["method"]): r for r in rows}
    for shape in ("48x997x203",):
        for obj in objectives:
            gate = obj not in ("label_smoothing", "kd")
            assert got[(shape, obj, "liger")]["status"] == "n/a"
            assert got[(shape, obj, "compiled")]["status"] == ("ok" if gate else "n/a")
            for method in ("fused", "plain", "reference"):
                assert got[(shape, obj, method)]["status"] == "ok", (shape, obj, method)
            fused = float(got[(shape, obj, "fused")]["loss"])
            # the same inputs: every method computes the same summed loss
            for method in ("plain",) + (("compiled",) if gate else ()):
                assert float(got[(shape, obj, method)]["loss"]) == pytest.approx(fused, rel=1e-4), (shape, obj, method)
    train = json.loads((tmp_path / "out" / "train_step_cpu.json").read_text())
    assert (tmp_path / "out" / "fused_loss_cpu.md").exists() and (tmp_path / "out" / "train_step_cpu.md").exists()
    assert train["group"] == "all" and "suite.log" in os.listdir(tmp_path / "out")
    assert "every case in one process (peaks not isolated)" in (tmp_path / "out" / "train_step_cpu.md").read_text()
    records = {r["case"]: r for r in train["records"]}
    assert sorted(records) == sorted(["fused/deft", "plain/deft", "trl/nll", "trl/dft", "deftsft/deft", "decoder/-"])
    assert all(r["status"] == "ok" for r in records.values()), records
    # each case starts from the same freshly loaded model: the same first loss wherever the objective is
    first = {k: records[k]["loss_first"] for k in ("fused/deft", "plain/deft", "deftsft/deft")}
    assert max(first.values()) == pytest.approx(min(first.values()), rel=1e-5), first
