"""deft.io: atomic, world-readable writes of files (streamed or whole) and folders; JSON-safe values."""

from __future__ import annotations

import math
import os
import stat

import pytest

from deft.io import atomic_open, atomic_write_dir, atomic_write_json, atomic_write_text, json_safe


@pytest.fixture
def strict_umask():
    """A umask under which plain ``open()`` would create 0600 files: the 0644 must be deft's doing."""
    old = os.umask(0o077)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_writes_are_world_readable_and_json_safe(tmp_path):
    p = atomic_write_json(tmp_path / "sub" / "r.json", {"x": math.nan, "y": (1, 2), "z": tmp_path})
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o644
    assert p.read_text().startswith("{") and '"x": null' in p.read_text()
    atomic_write_text(p, "new")
    assert p.read_text() == "new" and [f.name for f in p.parent.iterdir()] == ["r.json"]
    assert json_safe({1: float("inf")}) == {"1": None}


def test_atomic_open_lands_the_content_in_one_rename(tmp_path, strict_umask):
    target = tmp_path / "deep" / "records.jsonl"
    target.parent.mkdir()
    target.write_text("old\n")
    with atomic_open(target) as f:
        f.write("line 1\n")
        f.flush()
        # mid-write a reader still sees the whole old file, and the new bytes sit in one temp file beside it
        assert target.read_text() == "old\n"
        others = [p for p in target.parent.iterdir() if p != target]
        assert len(others) == 1 and others[0].read_text() == "line 1\n"
        f.write("line 2\n")
    assert target.read_text() == "line 1\nline 2\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["records.jsonl"]
    assert _mode(target) == 0o644


def test_atomic_open_error_keeps_the_old_file_and_no_temp(tmp_path, strict_umask):
    target = tmp_path / "out.txt"
    target.write_text("kept")
    with pytest.raises(RuntimeError, match="half way"):
        with atomic_open(target) as f:
            f.write("partial")
            raise RuntimeError("half way")
    assert target.read_text() == "kept"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
    # with no old file, nothing at all is left
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(tmp_path / "new" / "x.bin", "wb") as f:
            f.write(b"\x00\x01")
            raise KeyboardInterrupt
    assert list((tmp_path / "new").iterdir()) == []


def test_atomic_open_binary_and_parent_folders(tmp_path, strict_umask):
    target = tmp_path / "a" / "b" / "blob.bin"
    with atomic_open(target, "wb") as f:
        f.write(bytes(range(256)))
    assert target.read_bytes() == bytes(range(256)) and _mode(target) == 0o644
    with atomic_open(tmp_path / "u.txt") as f:  # text mode writes UTF-8 whatever the locale says
        f.write("é∑")
    assert (tmp_path / "u.txt").read_bytes() == "é∑".encode("utf-8")
    with pytest.raises(ValueError, match="'w' or 'wb'"):
        with atomic_open(tmp_path / "x", "a"):
            pass
    assert not (tmp_path / "x").exists()


def test_atomic_write_dir_replaces_only_when_complete(tmp_path, strict_umask):
    target = tmp_path / "final"
    atomic_write_dir(target, lambda d: (d / "w.txt").write_text("1"))
    assert (target / "w.txt").read_text() == "1" and _mode(target) == 0o755

    def broken(d):
        (d / "w.txt").write_text("2")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write_dir(target, broken)
    assert (target / "w.txt").read_text() == "1"
    assert [p.name for p in tmp_path.iterdir()] == ["final"]
    atomic_write_dir(target, lambda d: (d / "v.txt").write_text("3"))
    assert [p.name for p in target.iterdir()] == ["v.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["final"]


def test_atomic_write_dir_keep_if_keeps_a_finished_copy_of_another_writer(tmp_path):
    target = tmp_path / "cache"

    def racing(d):
        # another process finishes the same cache folder while this one is still writing
        other = tmp_path / "other"
        other.mkdir()
        (other / "marker").write_text("theirs")
        os.replace(other, target)
        (d / "marker").write_text("mine")

    atomic_write_dir(target, racing, keep_if=lambda p: (p / "marker").is_file())
    assert (target / "marker").read_text() == "theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["cache"]
    # an unfinished folder (no marker) is replaced
    (target / "marker").unlink()
    (target / "junk").write_text("x")
    atomic_write_dir(target, lambda d: (d / "marker").write_text("new"), keep_if=lambda p: (p / "marker").is_file())
    assert sorted(p.name for p in target.iterdir()) == ["marker"] and (target / "marker").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["cache"]
