"""Does the compiled gate step pay off against the eager one, on this device and dtype?

The fused engine spends most of its time in the three matrix products; the rest is row-local work
on each ``[c, V]`` logits chunk (softmax, ``Σ_v P_v²``, the gate, ``P - δ_y``). On one chunk
(default: the SmolLM2 head's, c=288, V=49152, H=576) this script times, in interleaved rounds,

* ``eager``: ``deft.fused_token_loss(..., impl="eager", chunk_size=c)`` forward + backward;
* ``compiled``: the same with ``impl="compile"`` (two ``torch.compile`` passes: inductor's C++ on
  CPU, Triton on CUDA), after checking both give the same loss and gradients;
* ``products``: the chunk's three matrix products alone (the floor),

and prints each one's median time, the elementwise share of the chunk and the ratios, paired per
round (so load from other processes falls on both sides alike). Usage::

    python benchmarks/compile_elementwise.py [--rows 288] [--vocab 49152] [--hidden 576] [--objective deft]
        [--dtype fp32|bf16] [--repeats 10] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))


def timer(sync):
    """``seconds(fn)``: wall time of one call of ``fn``, the device synchronised."""
    def seconds(fn) -> float:
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - t0
    return seconds


def steps(h, w, y, objective: str):
    """``{name: fn}``: one forward + backward of the chunk per implementation, and the products."""
    import deft

    dw, dh = torch.zeros(w.shape, dtype=torch.float32, device=w.device), torch.empty_like(h)

    def fused(impl):
        def run():
            hh, ww = h.detach().requires_grad_(True), w.detach().requires_grad_(True)
            deft.fused_token_loss(hh, ww, y, objective, chunk_size=h.shape[0], impl=impl).backward()
            return hh.grad, ww.grad
        return run

    def products():
        z = h @ w.T
        torch.mm(z, w, out=dh)
        dw.add_((z.T @ h).float()) if z.dtype != dw.dtype else dw.addmm_(z.T, h)

    return {"eager": fused("eager"), "compiled": fused("compile"), "products": products}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=288, help="rows per chunk (the engine's choice at SmolLM2)")
    parser.add_argument("--vocab", type=int, default=49152)
    parser.add_argument("--hidden", type=int, default=576)
    parser.add_argument("--objective", default="deft")
    parser.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16"], help="auto: bf16 on CUDA")
    parser.add_argument("--repeats", type=int, default=10, help="interleaved rounds (medians reported)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)

    dev = torch.device(args.device)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[
        args.dtype if args.dtype != "auto" else ("bf16" if dev.type == "cuda" else "fp32")]
    seconds = timer(torch.cuda.synchronize if dev.type == "cuda" else (lambda: None))
    g = torch.Generator().manual_seed(0)
    h = torch.randn(args.rows, args.hidden, generator=g).to(dev, dtype)
    w = (torch.randn(args.vocab, args.hidden, generator=g) * 3 / args.hidden ** 0.5).to(dev, dtype)
    y = torch.randint(0, args.vocab, (args.rows,), generator=g).to(dev)
    fns = steps(h, w, y, args.objective)
    compile_s = seconds(fns["compiled"])  # the first call compiles
    for a, b in zip(fns["compiled"](), fns["eager"]()):
        torch.testing.assert_close(a.float(), b.float(), rtol=2e-2, atol=1e-4)
    fns["eager"](), fns["products"]()  # warm-up
    times = {name: [] for name in fns}
    for _ in range(args.repeats):
        for name, fn in fns.items():
            times[name].append(seconds(fn))
    med = {name: statistics.median(t) for name, t in times.items()}

    def paired(a, b):
        return statistics.median(x / y for x, y in zip(times[a], times[b]))

    print(f"{args.objective} chunk [{args.rows}, {args.vocab}] x H={args.hidden}, {dtype}, on {dev}, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, {args.repeats} interleaved rounds")
    print(f"  three products alone    {med['products'] * 1e3:8.1f} ms")
    for name in ("eager", "compiled"):
        print(f"  chunk, {name:<9}        {med[name] * 1e3:8.1f} ms  ({paired(name, 'products'):.3f}x the products, "
              f"paired)")
    print(f"  compiled / eager (paired): {paired('compiled', 'eager'):.3f}x; the compiler's first call "
          f"{compile_s:.1f} s")


if __name__ == "__main__":
    main()
