"""Hand computations in numpy float64 for the anchor tests: a 3-token, 5-word case.

Every objective is written from the paper's / the method's formula on plain arrays, with the
stop-gradient parts computed from a frozen copy ``zs`` of the logits, so that a central finite
difference in ``z`` alone gives the gradient the library must produce (``a`` of DEFT is
``sg(Σ_v P_v²)``, paper Eq. 20). Nothing here imports deft or torch.
"""

from __future__ import annotations

import numpy as np

Z = np.array([
    [2.0, 0.5, -1.0, 0.0, 1.0],
    [0.1, 0.2, 0.3, 0.4, 0.5],
    [-3.0, 4.0, 0.0, 1.5, -0.5],
])
Y = np.array([0, 3, 2])  # a likely, a middling and an unlikely target
T = np.array([  # reference / teacher logits
    [1.0, 1.0, 0.0, -1.0, 0.5],
    [0.0, -0.5, 0.5, 2.0, 0.0],
    [0.5, 2.5, 1.0, 0.0, -2.0],
])
OLD = np.array([-0.5, -1.9, -3.0])  # old-policy log-probabilities of the labels


# (spec, formula name, parameters) for every objective the anchors check
CASES = [
    ("nll", "nll", {}),
    ("p", "p", {}),
    ("dft", "dft", {}),
    ("power", "power", {"alpha": 0.5}),
    ("power:alpha=0.25", "power", {"alpha": 0.25}),
    ("cayley", "cayley", {}),
    ("cayley_floor", "cayley_floor", {}),
    ("deft", "deft", {}),
    ("eaft", "eaft", {}),
    ("eaft:k=3,gamma=2", "eaft", {"k": 3, "gamma": 2.0}),
    ("profit", "profit", {}),
    ("profit:tau=0.2", "profit", {"tau": 0.2}),
    ("profit:direction=lower", "profit", {"direction": "lower"}),
    ("profit:tau=0.2,direction=lower", "profit", {"tau": 0.2, "direction": "lower"}),
    ("psft", "psft", {}),
    ("psft:eps_low=0.5,eps_high=0.1", "psft", {"eps_low": 0.5, "eps_high": 0.1}),
    ("label_smoothing", "label_smoothing", {}),
    ("label_smoothing:lam=0.3", "label_smoothing", {"lam": 0.3}),
    ("sft_kl", "sft_kl", {}),
    ("sft_kl:lam=0.7", "sft_kl", {"lam": 0.7}),
    ("asft", "asft", {}),
    ("asft:lam=0.7", "asft", {"lam": 0.7}),
    ("gem", "gem", {}),
    ("gem:beta=1.5", "gem", {"beta": 1.5}),
    ("kd", "kd", {}),
    ("kd_hybrid", "kd_hybrid", {}),
    ("kd_hybrid:lam=0.2", "kd_hybrid", {"lam": 0.2}),
    ("target_sft", "target_sft", {}),
    ("target_sft:eta=0.2", "target_sft", {"eta": 0.2}),
]


def log_softmax(z):
    m = z.max(-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


def softmax(z):
    return np.exp(log_softmax(z))


def pick(a, y=Y):
    return a[np.arange(len(y)), y]


def deformed(p, a):
    """``(1 - p^a) / a`` (paper Eq. 10)."""
    return (1.0 - p ** a) / a


def kl(t, z):
    lt = log_softmax(t)
    return (np.exp(lt) * (lt - log_softmax(z))).sum(-1)


def entropy_topk(zs, k):
    top = np.sort(zs, -1)[:, ::-1][:, :k]
    q = softmax(top)
    return -(q * np.log(q)).sum(-1)


def losses(name, z, zs, **kw):
    """Per-token loss ``[n]`` of objective ``name``: differentiable in ``z``, ``zs`` frozen."""
    logp = pick(log_softmax(z))
    p = np.exp(logp)
    ps = pick(softmax(zs))
    logP = log_softmax(z)
    if name == "nll":
        return -logp
    if name == "p":
        return 1.0 - p
    if name == "dft":
        return -ps * logp
    if name == "power":
        return deformed(p, kw.get("alpha", 0.5))
    if name == "cayley":
        root = np.sqrt(1.0 - ps)
        return deformed(p, (1.0 - root) / (1.0 + root))
    if name == "cayley_floor":
        f = 0.5 * ps.mean()
        return deformed(p, np.clip(f + (1.0 - f) * ps / (2.0 - ps), 0.001, 1.0))
    if name == "deft":
        return deformed(p, (softmax(zs) ** 2).sum(-1))
    if name == "eaft":
        k, gamma = min(kw.get("k", 20), z.shape[-1]), kw.get("gamma", 1.0)
        return -(entropy_topk(zs, k) / np.log(k)) ** gamma * logp
    if name == "profit":
        tau = kw.get("tau", 0.1)
        keep = ps >= tau if kw.get("direction", "higher") == "higher" else ps < tau
        return -keep.astype(float) * logp
    if name == "psft":
        lo, hi = kw.get("eps_low", 0.2), kw.get("eps_high", 0.28)
        r = np.exp(logp - OLD)
        return -np.minimum(r, np.clip(r, 1.0 - lo, 1.0 + hi))
    if name == "label_smoothing":
        lam = kw.get("lam", 0.1)
        return -(1.0 - lam) * logp - lam / z.shape[-1] * logP.sum(-1)
    if name == "sft_kl":
        return -logp + kw.get("lam", 0.1) * kl(T, z)
    if name == "asft":
        return -ps * logp + kw.get("lam", 0.1) * kl(T, z)
    if name == "gem":
        q = softmax(zs / kw.get("beta", 0.7))
        return -logp + (q * logP).sum(-1)
    if name == "kd":
        return -(softmax(T) * logP).sum(-1)
    if name == "kd_hybrid":
        lam = kw.get("lam", 0.5)
        return -(1.0 - lam) * logp + lam * kl(T, z)
    if name == "target_sft":
        eta = kw.get("eta", 0.5)
        guided = softmax(zs) ** (1.0 - eta) * softmax(T) ** eta
        guided /= guided.sum(-1, keepdims=True)
        q = (1.0 - ps)[:, None] * guided
        q[np.arange(len(Y)), Y] += ps
        return -(q * logP).sum(-1)
    raise KeyError(name)


def numeric_grad(loss_of_z, z, h=1e-6):
    """Central differences ``[n, V]`` of a per-token loss ``[n]`` whose row i depends on row i of
    ``z`` only."""
    grad = np.zeros_like(z)
    for i in range(z.shape[0]):
        for v in range(z.shape[1]):
            up, down = z.copy(), z.copy()
            up[i, v] += h
            down[i, v] -= h
            grad[i, v] = (loss_of_z(up)[i] - loss_of_z(down)[i]) / (2 * h)
    return grad


def loss_and_grad(name, z=Z, h=1e-6, **kw):
    """``(loss [n], dL/dz [n, V])``: the gradient of each token's loss by central differences
    (stop-gradient parts frozen at ``z``)."""
    return losses(name, z, z, **kw), numeric_grad(lambda zz: losses(name, zz, z, **kw), z, h)
