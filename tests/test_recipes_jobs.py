"""Tests of deft.recipes.jobs: what each result folder of a comparison was computed from (hashes of
settings and input bytes), why a result is redone, and which folder a run was started for."""

import json

from deft.recipes.jobs import Job, Ledger, changes, reason, record_inputs, stored


def test_changes_name_every_differing_key_nested_and_shorten_digests():
    old = {"lr": 1e-4, "max_steps": 2, "eval": {"k": 1, "n": 8}, "data": "a" * 64, "gone": True}
    new = {"lr": 1e-4, "max_steps": 3, "eval": {"k": 4, "n": 8}, "data": "b" * 64, "added": 1}
    assert changes(old, new) == [
        "added None -> 1", f"data {'a' * 12} -> {'b' * 12}", "eval.k 1 -> 4", "gone True -> None", "max_steps 2 -> 3",
    ]
    assert changes(new, new) == []


def test_reason_says_what_changed_or_that_an_input_file_did(tmp_path):
    job = Job("train", "deft: training", tmp_path / "run", {"lr": 2e-4, "objective": "deft"})
    assert reason(job, {}) == "no record of its inputs"
    assert reason(job, {"settings": {"lr": 1e-4, "objective": "deft"}}) == "lr 0.0001 -> 0.0002"
    assert reason(job, {"settings": dict(job.settings)}) == "an input file changed"


def test_the_hash_follows_settings_and_the_bytes_of_input_files(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text('{"prompt": "a", "response": "b"}\n')
    a = Job("train", "x", tmp_path / "run", {"lr": 1e-4}, {"data": str(data)})
    assert len(a.hash) == 64 and all(c in "0123456789abcdef" for c in a.hash)
    assert Job("train", "y", tmp_path / "elsewhere", {"lr": 1e-4}, {"data": str(data)}).hash == a.hash
    assert Job("train", "x", tmp_path / "run", {"lr": 2e-4}, {"data": str(data)}).hash != a.hash
    data.write_text('{"prompt": "a", "response": "c"}\n')
    assert Job("train", "x", tmp_path / "run", {"lr": 1e-4}, {"data": str(data)}).hash != a.hash


def test_record_and_stored_round_trip_and_unreadable_records_are_empty(tmp_path):
    job = Job("eval", "base: evaluation", tmp_path / "eval" / "base", {"model": "m", "k": 2}, {"data_dir": None})
    job.folder.mkdir(parents=True)
    record_inputs(job)
    assert stored(job.folder) == {"hash": job.hash, "settings": {"model": "m", "k": 2}, "inputs": {"data_dir": None}}
    assert stored(tmp_path / "missing") == {}
    (job.folder / "inputs.json").write_text("{not json")
    assert stored(job.folder) == {}


def test_ledger_remembers_what_each_folder_was_started_for(tmp_path):
    run = Job("train", "deft: training", tmp_path / "runs" / "deft", {"lr": 1e-4})
    other = Job("train", "nll: training", tmp_path / "runs" / "nll", {"lr": 1e-4, "objective": "nll"})
    ledger = Ledger(tmp_path)
    assert ledger.get(run, tmp_path) is None
    ledger.started(run, tmp_path)
    assert json.loads((tmp_path / "hashes.json").read_text()) == {"runs/deft": run.hash}
    again = Ledger(tmp_path)  # a later comparison reads it back
    assert again.get(run, tmp_path) == run.hash and again.get(other, tmp_path) is None
    again.started(other, tmp_path)
    assert Ledger(tmp_path).data == {"runs/deft": run.hash, "runs/nll": other.hash}
