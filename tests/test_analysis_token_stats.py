"""Tests of deft.analysis.token_stats: saved per-token statistics: the file format and checks over it
(no model, no training)."""

import pytest
import torch

from deft.analysis.token_stats import check_same_tokens, load_token_stats, save_token_stats

from probe_helpers import stats, tiny  # noqa: F401 (fixtures)


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
def test_save_load_round_trip(stats, tmp_path, suffix):
    path = save_token_stats(stats, tmp_path / f"token_stats{suffix}")
    back = load_token_stats(path)
    for key, value in stats.items():
        if key == "meta":
            assert back["meta"]["tokens"] == value["tokens"]
        else:
            assert torch.equal(back[key], value), key
    assert torch.equal(load_token_stats(tmp_path)["p"], stats["p"])  # a directory works too


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_token_stats(tmp_path / "nope.npz")
    with pytest.raises(FileNotFoundError):
        load_token_stats(tmp_path)
    (tmp_path / "bad.npz").write_text("not a zip")
    with pytest.raises(ValueError):
        load_token_stats(tmp_path / "bad.npz")


def test_check_same_tokens():
    a = {"p": torch.rand(4), "example": torch.tensor([0, 0, 1, 1]), "token_id": torch.tensor([5, 6, 7, 8])}
    check_same_tokens(a, dict(a))
    with pytest.raises(ValueError, match="has 3"):
        check_same_tokens(a, {k: v[:3] for k, v in a.items()})
    with pytest.raises(ValueError, match="token_id"):
        check_same_tokens(a, {**a, "token_id": torch.tensor([5, 6, 9, 8])})
