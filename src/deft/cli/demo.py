"""``deft demo``: the main job of ``make demo``.

Prints the objective table, writes the gate / learning-signal curves of every objective
(paper Eq. 7) and checks the fused chunked loss against the plain full-logits loss for every
objective on a head of the embedded model's shape (H=576, V=49152).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ..analysis.curves import all_curves, plot_curves, write_curves_csv
from ..fused import fused_token_loss, token_loss
from ..objectives import REGISTRY, list_objectives


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="the main job: objective table, gate curves, fused-vs-plain check",
        description="Print every objective, write curves.png/curves.csv (gate s(p) and signal W(p)) and "
                    "check the fused loss against the plain loss for every objective.",
    )
    p.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    p.add_argument("--tokens", type=int, default=512, help="tokens in the fused-vs-plain check (default 512)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the check (default 0)")
    p.set_defaults(func=run)


def _check(tokens: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    hidden_size, vocab = 576, 49152
    hidden = torch.randn(tokens, hidden_size, generator=gen) * 0.5
    weight = torch.randn(vocab, hidden_size, generator=gen) * 0.05
    labels = torch.randint(0, vocab, (tokens,), generator=gen)
    labels[: tokens // 4] = -100  # prompt tokens
    teacher = hidden + 0.1 * torch.randn(tokens, hidden_size, generator=gen)
    old = torch.full((tokens,), -11.0)
    extra = dict(ref_hidden=teacher, ref_weight=weight, teacher_hidden=teacher, teacher_weight=weight,
                 old_logprobs=old)
    print(f"\nfused vs plain on a {hidden_size}x{vocab} head, {tokens} tokens ({tokens - tokens // 4} loss tokens):")
    print(f"{'objective':<16}{'loss':>12}{'max |d loss|':>14}{'max |d grad|':>14}{'fused s':>9}{'plain s':>9}")
    for name in REGISTRY:
        results = []
        for fused in (True, False):
            h = hidden.clone().requires_grad_(True)
            w = weight.clone().requires_grad_(True)
            start = time.perf_counter()
            if fused:
                loss = fused_token_loss(h, w, labels, name, reduction="mean", **extra)
            else:
                loss = token_loss(h @ w.T, labels, name, ref_logits=teacher @ weight.T,
                                  teacher_logits=teacher @ weight.T, old_logprobs=old)
            loss.backward()
            results.append((loss.detach(), h.grad, w.grad, time.perf_counter() - start))
        (lf, hf, wf, tf), (lp, hp, wp, tp) = results
        dgrad = max((hf - hp).abs().max().item(), (wf - wp).abs().max().item())
        print(f"{name:<16}{lf.item():>12.5f}{(lf - lp).abs().item():>14.2e}{dgrad:>14.2e}{tf:>9.2f}{tp:>9.2f}")


def run(args) -> int:
    print("deft objectives:")
    rows = list_objectives()
    width = max(map(len, rows))
    for name, line in rows.items():
        print(f"  {name:<{width}}  {line}")
    out = Path(args.out)
    curves = all_curves()
    write_curves_csv(curves, out / "curves.csv")
    plot_curves(curves, out / "curves.png")
    print(f"\nwrote {out / 'curves.png'} and {out / 'curves.csv'}")
    _check(args.tokens, args.seed)
    return 0
