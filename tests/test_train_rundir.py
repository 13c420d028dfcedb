"""One run per folder, the lock, honest resume, the non-finite guard, warm-up and TensorBoard."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from transformers import TrainerCallback

from deft.cli.main import main
from deft.train import load_config, train
from deft.train.run import settings_hash_of
from deft.train.rundir import LOCK_NAME, RunLock, read_metrics

from train_rundir_helpers import QUIET, cfg_for


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: the pid names no process now
    return proc.pid


def _cli(model_dir, data, out, *extra):
    return [sys.executable, "-m", "deft.cli.main", "train", "--model", str(model_dir), "--data", str(data),
            "--out", str(out), "--max-length", "256", "--batch-size", "2", "--no-progress", "--seed", "5", *extra]


class _Crash(TrainerCallback):
    """Raises at the start of optimizer step ``at + 1`` (after step ``at`` was saved)."""

    def __init__(self, at):
        self.at = at

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.at:
            raise KeyboardInterrupt("simulated crash")


# -- the lock ---------------------------------------------------------------------------------
def test_lock_refuses_a_live_holder_and_takes_over_a_dead_one(tmp_path):
    first = RunLock(tmp_path).acquire()
    record = json.loads((tmp_path / LOCK_NAME).read_text())
    assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
    assert oct((tmp_path / LOCK_NAME).stat().st_mode & 0o777) == "0o644"
    with pytest.raises(ValueError, match=f"pid {os.getpid()} on {socket.gethostname()}.*choose another --out"):
        RunLock(tmp_path).acquire()
    first.release()
    assert not (tmp_path / LOCK_NAME).exists()

    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname()}))
    taken = RunLock(tmp_path).acquire()  # stale: its process is gone
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    taken.release()

    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": _dead_pid(), "host": "another-host"}))
    with pytest.raises(ValueError, match="on another-host"):  # cannot tell: refused, the file is kept
        RunLock(tmp_path).acquire()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["host"] == "another-host"


def test_a_second_concurrent_train_into_the_same_folder_is_refused(tiny_model_dir, figfont_records, tmp_path, capsys):
    """A real first process holds the folder: a second run (here, in the test process) stops at once
    with one line naming the first; the first is then killed, and a third run takes over its stale
    lock."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = tmp_path / "run"
    first = subprocess.Popen(_cli(tiny_model_dir, figfont_records, out, "--max-steps", "100000", "--save-steps", "1"),
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while not any(out.glob("checkpoint-*")):  # (older ones rotate away: save_total_limit)
            assert first.poll() is None and time.time() < deadline, "the first run ended early"
            time.sleep(0.1)
        capsys.readouterr()
        second = main(_cli(tiny_model_dir, figfont_records, out, "--max-steps", "1")[3:])
        assert first.poll() is None  # the first run is still going
    finally:
        first.kill()
        first.wait()
    assert second == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"pid {first.pid}" in err[0] and "another 'deft train'" in err[0], err
    assert json.loads((out / LOCK_NAME).read_text())["pid"] == first.pid  # the second left it alone
    config = (out / "config.yaml").read_text()
    assert "max_steps: 100000" in config  # the first run's config, not overwritten by the second

    assert main(_cli(tiny_model_dir, figfont_records, out, "--max-steps", "1", "--overwrite")[3:]) == 0
    assert (out / "final").is_dir() and not (out / LOCK_NAME).exists()
    assert "next: deft eval --model" in capsys.readouterr().out


# -- one run per folder -----------------------------------------------------------------------
def test_a_used_folder_is_refused_unless_resume_or_overwrite(tiny_model_dir, figfont_records, tmp_path, capsys):
    out = tmp_path / "run"
    train(cfg_for(tiny_model_dir, figfont_records, out, max_steps=2, save_steps=1), **QUIET)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    args = ["train", "--model", str(tiny_model_dir), "--data", str(figfont_records), "--out", str(out),
            "--no-progress", "--max-steps", "1", "--batch-size", "2", "--max-length", "256"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--resume" in err[0] and "--overwrite" in err[0] and str(out) in err[0], err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # nothing touched

    assert main(args + ["--overwrite", "--save-steps", "1"]) == 0
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1"]  # the old run's are gone
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1]
    assert "max_steps: 1\n" in (out / "config.yaml").read_text()

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    (foreign / "train.log").write_text("a wrapper's log is fine")
    with pytest.raises(ValueError, match="not from a deft run \\(notes.txt\\)"):
        train(cfg_for(tiny_model_dir, figfont_records, foreign, max_steps=1, overwrite=True), **QUIET)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_resume_on_a_finished_run_says_so_and_changes_nothing(tiny_model_dir, figfont_records, tmp_path, capsys):
    out = tmp_path / "run"
    train(cfg_for(tiny_model_dir, figfont_records, out, max_steps=2, save_steps=1), **QUIET)
    files = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()}
    assert main(["train", "--model", str(tiny_model_dir), "--data", str(figfont_records), "--out", str(out),
                 "--no-progress", "--max-steps", "4", "--batch-size", "2", "--max-length", "256", "--resume"]) == 0
    said = capsys.readouterr().out
    assert "finished already" in said and "nothing to do" in said and "deft eval --model" in said
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()} == files


def test_summary_after_resume_averages_every_step(tiny_model_dir, figfont_records, tmp_path):
    kw = dict(max_steps=4, save_steps=2, lr_scheduler="constant", warmup_ratio=0.0)
    ref = tmp_path / "ref"
    expected = train(cfg_for(tiny_model_dir, figfont_records, ref, **kw), **QUIET)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(cfg_for(tiny_model_dir, figfont_records, out, **kw), callbacks=[_Crash(2)], **QUIET)
    assert not (out / LOCK_NAME).exists() and not (out / "final").exists()
    said = []
    resumed_cfg = cfg_for(tiny_model_dir, figfont_records, out, resume=True, save_total_limit=3, **kw)
    summary = train(resumed_cfg, log=said.append)
    assert any("differ from" in line and "save_total_limit 2 -> 3" in line for line in said), said
    assert summary["settings_hash"] == settings_hash_of(resumed_cfg) == expected["settings_hash"]
    losses = [r["loss"] for r in read_metrics(out / "metrics.jsonl")]
    assert len(losses) == 4
    assert summary["train_loss"] == pytest.approx(sum(losses) / 4, rel=1e-12)
    assert summary["train_loss"] != pytest.approx(sum(losses[2:]) / 2, rel=1e-6)
    assert summary["train_loss"] == pytest.approx(expected["train_loss"], rel=1e-6)
    assert json.loads((out / "summary.json").read_text())["train_loss"] == summary["train_loss"]


def test_the_settings_hash_follows_what_the_run_computes(figfont_records, tmp_path):
    base = dict(model="m", data=str(figfont_records), output_dir=str(tmp_path / "a"))
    h = settings_hash_of(load_config(None, base))
    assert h == settings_hash_of(load_config(None, dict(base, output_dir=str(tmp_path / "b"), progress="false")))
    assert h != settings_hash_of(load_config(None, dict(base, lr="2e-5")))
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(Path(figfont_records).read_bytes())
    assert h == settings_hash_of(load_config(None, dict(base, data=str(copy))))  # same bytes elsewhere
    copy.write_bytes(Path(figfont_records).read_bytes() + b"\n")
    assert h != settings_hash_of(load_config(None, dict(base, data=str(copy))))


# -- trackers ---------------------------------------------------------------------------------
@pytest.mark.parametrize("report_to", ["tensorboard", "none, tensorboard"])
def test_tensorboard_events_hold_the_loss_and_token_statistics(tiny_model_dir, figfont_records, tmp_path, report_to):
    """Also with a space after the comma (it used to pass validation and attach nothing)."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    train(cfg_for(tiny_model_dir, figfont_records, out, max_steps=3, objective="deft", report_to=report_to),
          **QUIET)
    events = list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1
    acc = EventAccumulator(str(events[0]))
    acc.Reload()
    rows = read_metrics(out / "metrics.jsonl")
    for tag, key in (("train/loss", "loss"), ("train/mean_focus", "mean_focus"), ("train/mean_p", "mean_p")):
        scalars = acc.Scalars(tag)
        assert [s.step for s in scalars] == [1, 2, 3], tag
        assert [s.value for s in scalars] == pytest.approx([r[key] for r in rows], rel=1e-5), tag
def test_resuming_with_other_computing_settings_is_refused_before_anything_changes(tiny_model_dir, figfont_records,
                                                                                  tmp_path, capsys):
    from deft.cli.main import main

    kw = dict(max_steps=4, save_steps=2, lr_scheduler="constant", warmup_ratio=0.0)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(cfg_for(tiny_model_dir, figfont_records, out, **kw), callbacks=[_Crash(2)], **QUIET)
    files = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code = main(["train", "--model", str(tiny_model_dir), "--data", str(figfont_records), "--out", str(out),
                 "--max-steps", "4", "--save-steps", "2", "--lr-scheduler", "constant", "--warmup-ratio", "0",
                 "--lr", "0.5", "--max-length", "256", "--seed", "7", "--batch-size", "2", "--resume", "--no-progress"])
    err = capsys.readouterr().err
    assert (code == 2 and "resuming with other settings" in err and "(lr 0.001 -> 0.5)" in err
            and err.count("\n") == 1), err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == files  # the folder is untouched
    with pytest.raises(ValueError, match=r"max_steps 4 -> 6; lr_scheduler 'constant' -> 'cosine'"):
        # more steps under a schedule would change the learning rate of the steps already made
        train(cfg_for(tiny_model_dir, figfont_records, out, resume=True,
                      **dict(kw, max_steps=6, lr_scheduler="cosine")),
              **QUIET)


def test_a_constant_learning_rate_run_may_be_resumed_for_longer(tiny_model_dir, figfont_records, tmp_path):
    """Under a constant schedule, more steps continue the same run (the change is logged); the
    refusal above covers a schedule, where more steps would change the learning rate of the past."""
    kw = dict(save_steps=2, lr_scheduler="constant", warmup_ratio=0.0)
    out = tmp_path / "run"
    train(cfg_for(tiny_model_dir, figfont_records, out, max_steps=2, **kw), **QUIET)
    import shutil

    shutil.rmtree(out / "final")  # as if stopped after checkpoint-2 (a finished run is not resumed)
    said = []
    train(cfg_for(tiny_model_dir, figfont_records, out, max_steps=3, resume=True, **kw), log=said.append)
    assert any("max_steps 2 -> 3" in line for line in said), said
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl") if "loss" in r] == [1, 2, 3]


def test_a_run_started_when_list_options_were_comma_strings_resumes(tiny_model_dir, figfont_records, tmp_path):
    """An earlier version wrote ``target_modules: all-linear``, ``report_to: none`` and ``map: null`` to
    config.yaml; they mean the lists loaded now, so the run resumes, while a real change is refused."""
    import yaml

    kw = dict(max_steps=4, save_steps=2, lr_scheduler="constant", warmup_ratio=0.0)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(cfg_for(tiny_model_dir, figfont_records, out, **kw), callbacks=[_Crash(2)], **QUIET)
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["target_modules"] == ["all-linear"] and saved["report_to"] == [] and saved["map"] == []
    (out / "config.yaml").write_text(yaml.safe_dump({**saved, "target_modules": "q_proj, v_proj"}))
    with pytest.raises(ValueError, match=r"target_modules \['q_proj', 'v_proj'\] -> \['all-linear'\]"):
        train(cfg_for(tiny_model_dir, figfont_records, out, resume=True, **kw), **QUIET)
    (out / "config.yaml").write_text(yaml.safe_dump({**saved, "target_modules": "all-linear", "report_to": "none",
                                                     "map": None}))
    summary = train(cfg_for(tiny_model_dir, figfont_records, out, resume=True, **kw), **QUIET)
    assert summary["steps"] == 4
