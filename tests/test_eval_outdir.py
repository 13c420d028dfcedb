"""One evaluation per ``--out`` folder: refused when it holds another evaluation, a lock against a
second process, resumable after a kill (a real SIGKILLed ``deft eval``), world-readable files."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deft.cli.main import main
from deft.eval import evaluate
from deft.eval.generate import Generation

DATA = Path(__file__).parent / "data" / "eval"


class Echo:
    """A fake backend answering every math500 problem right; counts the prompts it generates for."""

    name = "echo"

    def __init__(self, fail_after=None):
        self.prompts = 0
        self.fail_after = fail_after

    def __call__(self, prompts, *, k, **options):
        if self.fail_after is not None and self.prompts >= self.fail_after:
            raise RuntimeError("killed")
        self.prompts += len(prompts)
        return [[Generation("\\boxed{1}", 2, True)] * k for _ in prompts]


def lines(path):
    """The complete lines of a JSONL file (a line torn by a kill has no newline yet)."""
    text = Path(path).read_text()
    return [json.loads(x) for x in text[:text.rfind("\n") + 1].splitlines()]


def run_echo(out, backend=None, **options):
    return evaluate(None, ["math500"], data_dir=DATA, backend=backend or Echo(), out=out, print_table=False,
                    progress=False, batch_size=1, **options)


def test_files_are_world_readable_and_record_the_settings_hash(tmp_path):
    res = run_echo(tmp_path / "out")
    out = tmp_path / "out"
    for name in ("results.json", "generations.jsonl", "eval.json"):
        assert (out / name).stat().st_mode & 0o777 == 0o644, name
    assert not (out / ".lock").exists()
    saved = json.loads((out / "results.json").read_text())
    digest = saved["_config"]["settings_hash"]
    assert len(digest) == 64 and json.loads((out / "eval.json").read_text())["settings_hash"] == digest
    assert res["_config"]["settings_hash"] == digest


def test_rerun_with_other_settings_is_refused_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "out"
    run_echo(out)
    first = (out / "results.json").read_text()
    with pytest.raises(ValueError, match="--overwrite"):
        run_echo(out, k=2)
    assert (out / "results.json").read_text() == first  # untouched
    res = run_echo(out, k=2, overwrite=True)
    assert res["math500"]["k"] == 2 and len(lines(out / "generations.jsonl")) == 2 * res["math500"]["n"]
    # settings alone (samples and results removed by a workflow that redoes the evaluation) are replaced
    for name in ("results.json", "generations.jsonl"):
        (out / name).unlink()
    assert run_echo(out)["math500"]["k"] == 1
    # a folder with files of something else is refused too
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    code = main(["eval", "--benchmark", "math500", "--data-dir", str(DATA), "--out", str(other)])
    err = capsys.readouterr().err
    assert code == 2 and "--overwrite" in err and err.count("\n") == 1


def test_same_settings_resume_without_generating(tmp_path):
    out = tmp_path / "out"
    first = run_echo(out)
    again = Echo()
    second = run_echo(out, backend=again)
    assert again.prompts == 0 and second["_config"]["reused_samples"] == first["math500"]["n"]
    assert second["math500"] == first["math500"]


def test_a_failed_run_resumes_where_it_stopped(tmp_path):
    out = tmp_path / "out"
    whole = run_echo(tmp_path / "whole")
    n = whole["math500"]["n"]
    with pytest.raises(RuntimeError):
        run_echo(out, backend=Echo(fail_after=2))  # two chunks of one problem each, then a crash
    assert len(lines(out / "generations.jsonl")) == 2 and not (out / "results.json").exists()
    rest = Echo()
    res = run_echo(out, backend=rest)
    assert rest.prompts == n - 2 and res["_config"]["reused_samples"] == 2
    assert res["math500"] == whole["math500"]
    keys = [(x["id"], x["sample"]) for x in lines(out / "generations.jsonl")]
    assert len(keys) == len(set(keys)) == n


def test_lock_of_a_live_process_refuses_and_a_stale_lock_is_taken(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".lock").write_text(f"{os.getppid()}\n")  # a live process
    with pytest.raises(ValueError, match=f"in use by another deft eval \\(pid {os.getppid()}\\)"):
        run_echo(out)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / ".lock").write_text(f"{dead.pid}\n")
    res = run_echo(out)
    assert res["math500"]["average_at_k"] >= 0 and not (out / ".lock").exists()


def _eval_cmd(model, out):
    return [sys.executable, "-m", "deft.cli.main", "eval", "--model", str(model), "--benchmark",
            "rg:basic_arithmetic", "--n", "8", "--k", "2", "--temperature", "1", "--max-new-tokens", "16",
            "--batch-size", "2", "--seed", "5", "--out", str(out), "--no-progress"]


def test_sigkilled_eval_resumes_to_the_uninterrupted_results(tmp_path, tiny_model_dir, capsys):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_eval_cmd(tiny_model_dir, killed), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    gens = killed / "generations.jsonl"
    while proc.poll() is None and not (gens.exists() and gens.stat().st_size > 0):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    before = lines(gens)
    assert 0 < len(before) < 16, "the kill came after the evaluation finished"
    assert not (killed / "results.json").exists()

    capsys.readouterr()
    assert main(_eval_cmd(tiny_model_dir, killed)[3:] + ["--resume"]) == 0  # resumed in this process
    resumed = json.loads((killed / "results.json").read_text())
    after = lines(gens)
    assert after[:len(before)] == before  # finished samples kept, not regenerated
    assert resumed["_config"]["reused_samples"] == len(before) and len(after) == 16
    said = f"reusing {len(before)} of 16 samples finished by an earlier run; generating the other {16 - len(before)}"
    assert said in capsys.readouterr().err

    whole = tmp_path / "whole"
    assert main(_eval_cmd(tiny_model_dir, whole)[3:]) == 0
    uninterrupted = json.loads((whole / "results.json").read_text())
    assert resumed["rg:basic_arithmetic"] == uninterrupted["rg:basic_arithmetic"]
    texts = lambda rows: {(r["id"], r["sample"]): r["text"] for r in rows}  # noqa: E731
    assert texts(after) == texts(lines(whole / "generations.jsonl"))


def test_a_resumed_eval_says_how_many_finished_samples_it_reused(tmp_path, capsys):
    n = run_echo(tmp_path / "whole")["math500"]["n"]
    for options in ({}, {"resume": True}):  # a plain re-run and --resume both continue, and both say so
        out = tmp_path / f"out{len(options)}"
        with pytest.raises(RuntimeError):
            run_echo(out, backend=Echo(fail_after=2))  # two chunks of one problem each, then a crash
        capsys.readouterr()
        assert run_echo(out, **options)["_config"]["reused_samples"] == 2
        said = f"resume: {out}: reusing 2 of {n} samples finished by an earlier run; generating the other {n - 2}"
        assert said in capsys.readouterr().err
    run_echo(tmp_path / "fresh")  # a new evaluation reuses nothing and says nothing about it
    assert "resume" not in capsys.readouterr().err


def test_resume_means_what_train_resume_means(tmp_path, capsys):
    """--resume continues the evaluation in --out: a finished one is left unchanged (and not generated
    again), an empty folder starts from scratch, another evaluation is refused; --overwrite contradicts it."""
    out = tmp_path / "out"
    first = run_echo(out)
    saved = (out / "results.json").read_bytes()
    capsys.readouterr()
    again = run_echo(out, backend=Echo(fail_after=0), resume=True)  # generating anything would raise
    assert again == json.loads(saved) and (out / "results.json").read_bytes() == saved
    assert again["math500"] == first["math500"]
    assert f"resume: the evaluation in {out} is finished; nothing to do" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--resume continues only the same evaluation: drop --resume and pass "
                                         "--overwrite"):
        run_echo(out, k=2, resume=True)
    assert (out / "results.json").read_bytes() == saved
    res = run_echo(tmp_path / "new", resume=True)
    assert res["_config"]["reused_samples"] == 0
    assert f"nothing to resume in {tmp_path / 'new'}: starting from scratch" in capsys.readouterr().err


@pytest.mark.parametrize("flags, needle", [
    (["--resume", "--overwrite"], "'resume' and 'overwrite' contradict each other"),
    (["--resume"], "resume: continues the evaluation in --out; pass --out DIR"),
])
def test_resume_flag_errors_are_one_line(flags, needle, tmp_path, capsys):
    out = ["--out", str(tmp_path / "o")] if "--overwrite" in flags else []
    assert main(["eval", "--benchmark", "math500", "--data-dir", str(DATA), *flags, *out]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err
