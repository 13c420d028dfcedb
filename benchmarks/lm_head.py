"""The inputs every ``fused_loss.py`` method sees, and the reference trainer's formulation.

* :func:`make_inputs`: an LM head's hidden states, weight and labels (and a teacher's hidden
  states) with a realistic spread of the label probability ``p``;
* :func:`reference_loss`: forward + backward the way the reference trainer (veRL SFT trainer
  with ``objective_trans``) computes each objective, holding full ``[N, V]`` fp32 tensors.
"""

from __future__ import annotations

import math

IGNORE_INDEX = -100
LOGIT_STD, CONFIDENT_SHARE, IGNORED_SHARE, MARGIN = 3.0, 0.6, 0.1, (4.0, 20.0)
POWER_ALPHA, EAFT_K, EAFT_GAMMA, LABEL_SMOOTHING = 0.5, 20, 1.0, 0.1


def make_inputs(H: int, V: int, N: int, seed: int, teacher: bool, device="cpu"):
    """fp32 hidden ``[N, H]``, weight ``[V, H]``, labels ``[N]`` (and teacher hidden states),
    drawn on ``device`` from ``seed``: logits with a random part of std ``LOGIT_STD``, the label's
    logit lifted by a margin in ``MARGIN`` on ``CONFIDENT_SHARE`` of the positions (so ``p`` spans
    1e-8 to ~1), ``IGNORED_SHARE`` of the positions ignored."""
    import torch

    g = torch.Generator(device).manual_seed(seed)
    weight = torch.randn(V, H, generator=g, device=device).mul_(LOGIT_STD / math.sqrt(H))
    hidden = torch.randn(N, H, generator=g, device=device)
    labels = torch.randint(0, V, (N,), generator=g, device=device)
    u = torch.rand(N, generator=g, device=device)
    confident = (u < CONFIDENT_SHARE).nonzero().squeeze(1)
    margin = MARGIN[0] + (MARGIN[1] - MARGIN[0]) * torch.rand(confident.numel(), generator=g, device=device)
    for s in range(0, confident.numel(), 1024):  # small temporaries only
        idx = confident[s:s + 1024]
        wy = weight.index_select(0, labels[idx])
        hidden[idx] += (margin[s:s + 1024] / wy.pow(2).sum(-1)).unsqueeze(1) * wy
    labels[u >= 1.0 - IGNORED_SHARE] = IGNORE_INDEX
    teacher_hidden = hidden + 0.5 * torch.randn(N, H, generator=g, device=device) if teacher else None
    return hidden, weight, labels, teacher_hidden


def reference_loss(objective: str, hidden, weight, labels, teacher_hidden):
    """Forward + backward the reference trainer's way (``objective_trans``): logits for every
    position, full fp32 ``log_softmax`` (``F.cross_entropy`` for NLL), a full fp32 ``softmax``
    where the objective needs the distribution, the per-token loss times the mask, summed."""
    import torch
    import torch.nn.functional as F

    logits = hidden @ weight.T
    mask = (labels != IGNORE_INDEX).to(torch.float32)
    if objective == "nll":
        per_token = F.cross_entropy(logits, labels, reduction="none", ignore_index=IGNORE_INDEX)
    else:
        log_probs = F.log_softmax(logits.float(), dim=-1)
        logp = log_probs.gather(1, labels.clamp_min(0).unsqueeze(-1)).squeeze(-1)
        p = logp.exp()
        if objective in ("deft", "eaft", "kd"):
            with torch.set_grad_enabled(objective != "kd"):
                probs = F.softmax((teacher_hidden @ weight.T if objective == "kd" else logits).float(), dim=-1)
        if objective == "p":
            per_token = 1 - p
        elif objective == "dft":
            per_token = -p.detach() * logp
        elif objective == "power":  # GeneralFamily-0.5
            per_token = -(torch.exp(POWER_ALPHA * logp) - 1) / POWER_ALPHA
        elif objective in ("cayley", "cayley_floor"):  # Cayley_Trans, batch-floored focus
            p_label, valid = p.detach(), mask.bool()
            floor = 0.5 * (p_label[valid].mean() if valid.any() else p_label.new_zeros(()))
            dist = 1.0 - p_label + 1e-8
            alpha = (floor + (1.0 - floor) * (1.0 - dist) / (1.0 + dist + 1e-8)).clamp(0.001, 1.0).detach()
            per_token = -(torch.exp(alpha * logp) - 1) / (alpha + 1e-8)
        elif objective == "deft":
            alpha = probs.pow(2).sum(-1).detach()
            per_token = -(torch.exp(alpha * logp) - 1) / (alpha + 1e-6)
        elif objective == "eaft":
            top = probs.topk(EAFT_K, dim=-1).values
            q = top / top.sum(-1, keepdim=True)
            ent = -(q * q.clamp_min(1e-30).log()).sum(-1)
            per_token = -(ent / math.log(EAFT_K)).clamp(0, 1).pow(EAFT_GAMMA).detach() * logp
        elif objective == "label_smoothing":
            per_token = -((1 - LABEL_SMOOTHING) * logp + LABEL_SMOOTHING * log_probs.mean(-1))
        elif objective == "kd":
            per_token = -(probs * log_probs).sum(-1)
        else:
            raise ValueError(f"no reference formulation for objective '{objective}'")
    loss = (per_token * mask).sum()
    loss.backward()
    return loss
