"""Textbook formulas of every objective, written independently of ``deft.objectives``.

Each takes full logits ``z [n, V]`` (any float dtype), labels ``y [n]`` and the extra inputs,
and returns per-token losses ``[n]`` differentiable by autograd. Tests compare the library
against these.
"""

from __future__ import annotations

import math

import torch


def _logp(z, y):
    return torch.log_softmax(z, -1).gather(-1, y[:, None])[:, 0]


def _kl(target_logits, z):
    t = torch.log_softmax(target_logits, -1)
    return (t.exp() * (t - torch.log_softmax(z, -1))).sum(-1)


def power_loss(p, a):
    return (1 - p ** a) / a


def nll(z, y, **_):
    return -_logp(z, y)


def prob(z, y, **_):
    return 1 - _logp(z, y).exp()


def dft(z, y, **_):
    lp = _logp(z, y)
    return -lp.exp().detach() * lp


def power(z, y, alpha=0.5, **_):
    return power_loss(_logp(z, y).exp(), alpha)


def cayley(z, y, **_):
    p = _logp(z, y).exp()
    root = torch.sqrt(1 - p.detach())
    a = (1 - root) / (1 + root)
    return power_loss(p, a)


def cayley_floor(z, y, **_):
    p = _logp(z, y).exp()
    f = 0.5 * p.detach().mean()
    a = torch.clamp(f + (1 - f) * p.detach() / (2 - p.detach()), 0.001, 1)
    return power_loss(p, a)


def deft(z, y, **_):
    probs = torch.softmax(z, -1)
    a = (probs ** 2).sum(-1).detach()
    return power_loss(probs.gather(-1, y[:, None])[:, 0], a)


def eaft(z, y, k=20, gamma=1.0, **_):
    top = torch.softmax(torch.topk(z.detach(), min(k, z.shape[-1]), -1).values, -1)
    h = -(top * top.log()).sum(-1)
    w = (h / math.log(min(k, z.shape[-1]))) ** gamma
    return -w * _logp(z, y)


def profit(z, y, tau=0.1, direction="higher", **_):
    lp = _logp(z, y)
    keep = (lp.detach().exp() >= tau) if direction == "higher" else (lp.detach().exp() < tau)
    return -keep.to(z.dtype) * lp


def psft(z, y, old_logprobs=None, eps_low=0.2, eps_high=0.28, **_):
    r = (_logp(z, y) - old_logprobs).exp()
    return -torch.minimum(r, torch.clamp(r, 1 - eps_low, 1 + eps_high))


def label_smoothing(z, y, lam=0.1, **_):
    lsm = torch.log_softmax(z, -1)
    return -((1 - lam) * lsm.gather(-1, y[:, None])[:, 0] + lam / z.shape[-1] * lsm.sum(-1))


def sft_kl(z, y, ref_logits=None, lam=0.1, **_):
    return -_logp(z, y) + lam * _kl(ref_logits, z)


def asft(z, y, ref_logits=None, lam=0.1, **_):
    lp = _logp(z, y)
    return -lp.exp().detach() * lp + lam * _kl(ref_logits, z)


def gem(z, y, beta=0.7, **_):
    q = torch.softmax(z.detach() / beta, -1)
    return -_logp(z, y) + (q * torch.log_softmax(z, -1)).sum(-1)


def kd(z, y, teacher_logits=None, **_):
    return -(torch.softmax(teacher_logits, -1) * torch.log_softmax(z, -1)).sum(-1)


def kd_hybrid(z, y, teacher_logits=None, lam=0.5, **_):
    return -(1 - lam) * _logp(z, y) + lam * _kl(teacher_logits, z)


def target_sft(z, y, teacher_logits=None, eta=0.5, **_):
    probs = torch.softmax(z.detach(), -1)
    teacher = torch.softmax(teacher_logits, -1)
    guided = probs ** (1 - eta) * teacher ** eta
    guided = guided / guided.sum(-1, keepdim=True)
    p = probs.gather(-1, y[:, None])
    q = (1 - p) * guided + p * torch.nn.functional.one_hot(y, z.shape[-1]).to(z.dtype)
    return -(q * torch.log_softmax(z, -1)).sum(-1)


FORMULAS = {
    "nll": nll, "p": prob, "dft": dft, "power": power, "cayley": cayley, "cayley_floor": cayley_floor,
    "deft": deft, "eaft": eaft, "profit": profit, "psft": psft, "label_smoothing": label_smoothing,
    "sft_kl": sft_kl, "asft": asft, "gem": gem, "kd": kd, "kd_hybrid": kd_hybrid, "target_sft": target_sft,
}

# gate s(p) of the gate objectives, as a function of the target probability and the full
# distribution (paper Eq. 6: dL/dz = s (P - δ_y))
GATES = {
    "nll": lambda p, probs: torch.ones_like(p),
    "p": lambda p, probs: p,
    "dft": lambda p, probs: p,
    "power": lambda p, probs: p ** 0.5,
    "cayley": lambda p, probs: p ** ((1 - torch.sqrt(1 - p)) / (1 + torch.sqrt(1 - p))),
    "deft": lambda p, probs: p ** (probs ** 2).sum(-1),
}
