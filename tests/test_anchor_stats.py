"""Per-step token statistics (deft.train.stats.StepStats) against hand-computed sums.

Each micro-batch hands ``add`` the summed loss and per-token tensors like the loss engines return;
the expected step statistics are written out by hand from the definitions in the module docstring.
"""

import pytest
import torch

from deft.train.stats import STAT_NAMES, StepStats


def micro(p, gate, entropy, mask, focus=None):
    stats = {"p": torch.tensor(p), "gate": torch.tensor(gate), "entropy": torch.tensor(entropy),
             "mask": torch.tensor(mask)}
    if focus is not None:
        stats["focus"] = torch.tensor(focus)
    return stats


def two_micro_batches(with_focus=True, normalization="tokens"):
    s = StepStats(normalization)
    # micro-batch 1: tokens 0, 1, 3 count (token 2 is padding with garbage values that must be ignored)
    s.add(torch.tensor(3.0), micro([0.5, 0.0005, 0.99, 0.7], [1.0, 2.0, 50.0, 3.0], [0.1, 0.2, 9.0, 0.3],
                                   [True, True, False, True], [0.25, 0.5, 9.0, 0.75] if with_focus else None),
          input_tokens=7)
    # micro-batch 2: one token, p exactly at the 0.5 and 1e-3 borders must count as neither
    s.add(torch.tensor(1.5), micro([0.5, 0.001], [4.0, 8.0], [0.4, 0.6], [True, False],
                                   [1.0, 3.0] if with_focus else None), input_tokens=5)
    return s


def test_step_statistics_are_token_means_over_micro_batches():
    out = two_micro_batches().result()
    n = 4  # loss tokens: 3 + 1
    assert out["tokens"] == n and out["input_tokens"] == 12
    assert out["loss"] == pytest.approx((3.0 + 1.5) / n)
    assert out["mean_p"] == pytest.approx((0.5 + 0.0005 + 0.7 + 0.5) / n)
    assert out["mean_gate"] == pytest.approx((1.0 + 2.0 + 3.0 + 4.0) / n)
    assert out["mean_entropy"] == pytest.approx((0.1 + 0.2 + 0.3 + 0.4) / n)
    assert out["frac_p_below_1e-3"] == pytest.approx(1 / n)  # only 0.0005 (0.001 is masked out)
    assert out["frac_p_above_0.5"] == pytest.approx(1 / n)  # only 0.7 (0.5 is not above 0.5)
    assert out["mean_focus"] == pytest.approx((0.25 + 0.5 + 0.75 + 1.0) / n)
    assert isinstance(out["tokens"], int) and isinstance(out["input_tokens"], int)
    assert set(STAT_NAMES) <= set(out)


def test_borders_of_the_probability_fractions():
    s = StepStats()
    s.add(torch.tensor(0.0), micro([0.001, 0.0009999, 0.5, 0.5000001], [0.0] * 4, [0.0] * 4, [True] * 4),
          input_tokens=4)
    out = s.result()
    assert out["frac_p_below_1e-3"] == pytest.approx(0.25)
    assert out["frac_p_above_0.5"] == pytest.approx(0.25)
    # 1e-3 itself is not representable in float32: float64 statistics hit the border exactly
    s = StepStats()
    p = torch.tensor([1e-3, 0.5, 0.2], dtype=torch.float64)
    s.add(torch.tensor(0.0), {"p": p, "gate": torch.zeros(3), "entropy": torch.zeros(3),
                              "mask": torch.ones(3, dtype=torch.bool)}, input_tokens=3)
    out = s.result()
    assert out["frac_p_below_1e-3"] == 0.0 and out["frac_p_above_0.5"] == 0.0


def test_no_focus_key_for_objectives_without_focus():
    out = two_micro_batches(with_focus=False).result()
    assert "mean_focus" not in out
    assert out["mean_p"] == pytest.approx((0.5 + 0.0005 + 0.7 + 0.5) / 4)


def test_empty_step_and_reset():
    s = StepStats()
    assert s.result() == {"loss": 0.0, "tokens": 0, "input_tokens": 0}
    s.add(torch.tensor(0.0), micro([0.3], [1.0], [0.2], [False]), input_tokens=9)
    assert s.result() == {"loss": 0.0, "tokens": 0, "input_tokens": 9}
    s = two_micro_batches()
    s.reset()
    assert s.result() == {"loss": 0.0, "tokens": 0, "input_tokens": 0}
    s.add(torch.tensor(2.0), micro([0.25], [1.0], [0.2], [True]), input_tokens=3)
    assert s.result()["loss"] == pytest.approx(2.0) and s.result()["mean_p"] == pytest.approx(0.25)


def test_sums_are_float64_so_large_steps_stay_exact():
    s = StepStats()
    assert s.sums.dtype == torch.float64
    # 2^24 + 1 is not representable in float32: an fp32 accumulator would lose the last token
    big = 2 ** 24
    s.add(torch.tensor(0.0), micro([0.5], [1.0], [0.0], [True]), input_tokens=big)
    s.add(torch.tensor(0.0), micro([0.5], [1.0], [0.0], [True]), input_tokens=1)
    assert s.result()["input_tokens"] == big + 1


class _FakeAccelerator:
    """Only the two attributes and the one method StepStats.reduce uses; sums like 2 processes."""

    def __init__(self, num_processes):
        self.num_processes = num_processes
        self.device = torch.device("cpu")

    def reduce(self, tensor, reduction):
        assert reduction == "sum"
        return tensor * self.num_processes


def test_reduce_sums_over_processes_and_is_a_no_op_on_one():
    s = two_micro_batches()
    before = s.sums.clone()
    s.reduce(None)
    s.reduce(_FakeAccelerator(1))
    assert torch.equal(s.sums, before)
    s.reduce(_FakeAccelerator(2))
    assert torch.equal(s.sums, 2 * before)
    out = s.result()  # means are unchanged, counts double
    assert out["tokens"] == 8 and out["input_tokens"] == 24
    assert out["mean_p"] == pytest.approx((0.5 + 0.0005 + 0.7 + 0.5) / 4)


def test_micro_batch_normalisation_averages_each_micro_batch_mean():
    s = two_micro_batches(normalization="micro_batch")
    out = s.result()
    # micro-batch 1: 3.0 over 3 tokens -> 1.0; micro-batch 2: 1.5 over 1 token -> 1.5
    assert out["loss"] == pytest.approx((1.0 + 1.5) / 2)
    assert out["tokens"] == 4 and out["mean_p"] == pytest.approx((0.5 + 0.0005 + 0.7 + 0.5) / 4)
    s.reduce(_FakeAccelerator(2))  # the same micro-batches on two processes: the mean is unchanged
    assert s.result()["loss"] == pytest.approx(1.25)
    assert StepStats("micro_batch").result()["loss"] == 0.0
    assert two_micro_batches().result()["loss"] == pytest.approx(4.5 / 4)  # tokens: 1.125, not 1.25


def test_unknown_normalisation_is_refused():
    with pytest.raises(ValueError, match="tokens or micro_batch, got 'batch'"):
        StepStats("batch")
