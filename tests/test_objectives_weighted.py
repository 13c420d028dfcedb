"""Tests of deft.objectives.weighted: nLL with a detached per-token weight: EAFT, ProFiT, Proximal SFT
(gate objectives)."""

import torch

import deft

from objectives_helpers import V


def test_profit_directions_and_threshold():
    z = torch.zeros(2, V)
    z[0, 0] = 10.0  # p ~ 1 on token 0
    y = torch.tensor([0, 1])  # second row p = 1/V
    hi = deft.token_loss(z, y, "profit:tau=0.1", reduction="none")
    lo = deft.token_loss(z, y, "profit:tau=0.1,direction=lower", reduction="none")
    assert hi[1] == 0 and hi[0] > 0 and lo[0] == 0
    torch.testing.assert_close(lo[1], torch.tensor(-torch.log_softmax(z[1], -1)[1].item()))
