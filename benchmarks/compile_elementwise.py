"""Does the compiled per-chunk kernel pay off against the eager passes, on this device?

The fused engine spends most of its time in the three matrix products; the rest is row-local work
on each ``[c, V]`` logits chunk (softmax statistics, ``Σ_v P_v²``, the gate, ``g = s (P - δ_y)``).
On one chunk (default: the SmolLM2 head's, c=288, V=49152, H=576) this script times

* ``eager``: ``deft.fused.kernel.gate_chunk(kernel="eager")``, the engine's passes;
* ``compiled``: ``gate_chunk(kernel="compile")``, two ``torch.compile`` passes (inductor: C++ on
  CPU, Triton on CUDA), after checking both give the same loss and gradient;
* ``products``: the chunk's three matrix products, for scale,

and prints each time, the compile time and the elementwise share of a whole chunk. Usage::

    python benchmarks/compile_elementwise.py [--rows 288] [--vocab 49152] [--hidden 576] [--objective deft]
        [--dtype fp32|bf16] [--repeats 20] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))


def timed(fn, repeats: int, sync) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls after one untimed call."""
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=288, help="rows per chunk (the engine's choice at SmolLM2)")
    parser.add_argument("--vocab", type=int, default=49152)
    parser.add_argument("--hidden", type=int, default=576)
    parser.add_argument("--objective", default="deft")
    parser.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16"], help="auto: bf16 on CUDA")
    parser.add_argument("--repeats", type=int, default=20, help="timed iterations (median reported)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)

    from deft import parse_objective
    from deft.fused.kernel import gate_chunk

    dev = torch.device(args.device)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[
        args.dtype if args.dtype != "auto" else ("bf16" if dev.type == "cuda" else "fp32")]
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    g = torch.Generator().manual_seed(0)
    h = torch.randn(args.rows, args.hidden, generator=g).to(dev, dtype)
    w = (torch.randn(args.vocab, args.hidden, generator=g) * 3 / args.hidden ** 0.5).to(dev, dtype)
    y = torch.randint(0, args.vocab, (args.rows,), generator=g).to(dev)
    z = h @ w.T
    dw, dh = torch.zeros(w.shape, dtype=torch.float32, device=dev), torch.empty_like(h)
    obj = parse_objective(args.objective)

    t0 = time.perf_counter()
    loss_c, grad_c, _ = gate_chunk(obj, z, y, kernel="compile")
    sync()
    compile_s = time.perf_counter() - t0
    loss_e, grad_e, _ = gate_chunk(obj, z, y, kernel="eager")
    torch.testing.assert_close(loss_c, loss_e, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(grad_c.float(), grad_e.float(), rtol=1e-2, atol=1e-5)

    def products():
        zc = h @ w.T
        torch.mm(zc, w, out=dh)
        dw.add_((zc.T @ h).float()) if zc.dtype != dw.dtype else dw.addmm_(zc.T, h)

    t_prod = timed(products, max(3, args.repeats // 4), sync)
    t_eager = timed(lambda: gate_chunk(obj, z, y, kernel="eager"), args.repeats, sync)
    t_comp = timed(lambda: gate_chunk(obj, z, y, kernel="compile"), args.repeats, sync)
    print(f"{args.objective} chunk [{args.rows}, {args.vocab}] x H={args.hidden}, {dtype}, on {dev}, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads")
    print(f"  three products          {t_prod * 1e3:8.2f} ms")
    print(f"  elementwise, eager      {t_eager * 1e3:8.2f} ms  ({t_eager / (t_eager + t_prod):.1%} of the chunk)")
    print(f"  elementwise, compiled   {t_comp * 1e3:8.2f} ms  ({t_comp / (t_comp + t_prod):.1%} of the chunk; "
          f"first call with compile {compile_s:.1f} s)")
    print(f"  compiled / eager elementwise: {t_comp / t_eager:.2f}x; whole chunk: "
          f"{(t_comp + t_prod) / (t_eager + t_prod):.3f}x")


if __name__ == "__main__":
    main()
