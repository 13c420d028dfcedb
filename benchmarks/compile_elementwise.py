"""Does ``torch.compile`` pay off for the fused loss's per-chunk elementwise work?

The fused engine spends most of its time in the three matrix products; the rest is row-local
work on each ``[c, V]`` logits chunk (row max, softmax, ``Σ_v P_v²``, the gate, the in-place
gradient ``s (P - δ_y)``). This script times, on one chunk of the SmolLM2 head (default
c=288, V=49152, H=576):

* ``eager``: the engine's own gate-chunk code (``deft.fused.chunked._gate_chunk``), as run;
* ``compiled``: the same math for DEFT as one function under ``torch.compile`` (inductor),
  which can fuse the passes over the chunk;
* ``products``: the chunk's three matrix products (``h W^T``, ``g W``, ``g^T h``), for scale.

It prints the times, the compile time and what share of a chunk's total the elementwise part
is, eager and compiled. Usage::

    python benchmarks/compile_elementwise.py [--rows 288] [--vocab 49152] [--hidden 576] [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def deft_gate_grad(z: torch.Tensor, y: torch.Tensor):
    """DEFT on one chunk: per-token loss ``(1 - p^a)/a`` with ``a = Σ P²`` and the logit
    gradient ``p^a (P - δ_y)`` ``[c, V]`` (paper Eq. 20, 11-12)."""
    lse = torch.logsumexp(z, dim=-1)
    probs = torch.exp(z - lse.unsqueeze(-1))
    a = (probs * probs).sum(-1)
    logp = z.gather(-1, y.unsqueeze(-1)).squeeze(-1) - lse
    gate = torch.exp(a * logp)
    loss = -torch.expm1(a * logp) / a
    grad = probs * gate.unsqueeze(-1)
    grad = grad.scatter_add(-1, y.unsqueeze(-1), -gate.unsqueeze(-1))
    return loss, grad


def timed(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=288, help="rows per chunk (the engine's choice at SmolLM2)")
    parser.add_argument("--vocab", type=int, default=49152)
    parser.add_argument("--hidden", type=int, default=576)
    parser.add_argument("--repeats", type=int, default=20, help="timed iterations (median reported)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)

    from deft import parse_objective
    from deft.fused.chunked import _gate_chunk, _Plan

    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    g = torch.Generator().manual_seed(0)
    z = (torch.randn(args.rows, args.vocab, generator=g) * 3).to(dev)
    y = torch.randint(0, args.vocab, (args.rows,), generator=g).to(dev)
    h = torch.randn(args.rows, args.hidden, generator=g).to(dev)
    w = (torch.randn(args.vocab, args.hidden, generator=g) * 0.02).to(dev)
    buf, zbuf, dw, dh = torch.empty_like(z), torch.empty_like(z), torch.zeros_like(w), torch.empty_like(h)
    plan = _Plan(objective=parse_objective("deft"), labels=y, chunk_size=args.rows, reduction="sum")

    def eager():
        zbuf.copy_(z)  # the engine overwrites nothing in z, but keep both paths' inputs identical
        _gate_chunk(plan, zbuf, y, 0, args.rows, None, True, False, buf)
        sync()

    t0 = time.perf_counter()
    compiled_fn = torch.compile(deft_gate_grad, dynamic=False)
    try:
        compiled_fn(z, y)
        sync()
    except Exception as exc:  # no C++ compiler / backend: report and stop
        print(f"torch.compile failed here ({type(exc).__name__}: {str(exc).splitlines()[0]}); eager only")
        compiled_fn = None
    compile_s = time.perf_counter() - t0

    def compiled():
        compiled_fn(z, y)
        sync()

    def products():
        torch.mm(h, w.T, out=zbuf)
        torch.mm(zbuf, w, out=dh)
        dw.addmm_(zbuf.T, h)
        sync()

    # same math: eager engine chunk vs the compiled function
    loss_e, grad_e, _ = _gate_chunk(plan, z.clone(), y, 0, args.rows, None, True, False, torch.empty_like(z))
    if compiled_fn is not None:
        loss_c, grad_c = compiled_fn(z, y)
        torch.testing.assert_close(loss_c, loss_e, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(grad_c, grad_e, rtol=1e-4, atol=1e-6)

    t_eager = timed(eager, args.repeats)
    t_prod = timed(products, max(3, args.repeats // 4))
    print(f"chunk [{args.rows}, {args.vocab}] on {dev}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"  three products          {t_prod * 1e3:8.1f} ms")
    print(f"  elementwise, eager      {t_eager * 1e3:8.1f} ms  ({t_eager / (t_eager + t_prod):.1%} of the chunk)")
    if compiled_fn is not None:
        t_comp = timed(compiled, args.repeats)
        print(f"  elementwise, compiled   {t_comp * 1e3:8.1f} ms  ({t_comp / (t_comp + t_prod):.1%} of the chunk; "
              f"compile {compile_s:.1f} s)")
        print(f"  compiled / eager elementwise: {t_comp / t_eager:.2f}x; whole chunk: "
              f"{(t_comp + t_prod) / (t_eager + t_prod):.3f}x")


if __name__ == "__main__":
    main()
