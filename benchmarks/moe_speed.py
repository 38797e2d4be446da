"""SAM-Med3D-MoE speed: MoE predict vs the single general decoder, on the same embedding.

Usage: ``python benchmarks/moe_speed.py [--model vit_b_ori] [--threads 2] [--clicks 30]
[--device cpu|cuda]``

Measures, in one run, with the same seeded random weights and volume:
- per-click latency of ``MoEPredictor.predict`` (gate + general decoder + the top-1 expert, with
  tau = 0 so that the expert always runs: the worst case) against ``Sam3DPredictor.predict``,
  both on the same cached embedding; with 1 expert installed and with 15;
- the whole forward (encoder + one click) of the MoE against the plain model.
Timings of the compared sides are interleaved so that both see the same machine load; medians
are reported. Targets: MoE/single <= 1.5, 15/1 experts <= 1.05, whole MoE/plain <= 1.1.
It also times the gate alone and the expert decoder alone: the MoE click is the plain click plus
these two, so the 1.5 target needs them to cost at most half a plain click.
On the CPU it also prints two lower bounds of the MoE/plain ratio for the paper's experts (full
decoder copies) in float32: from the decoder's and the gate's matrix products replayed alone,
and from their multiply-adds alone at this machine's best GEMM rate, with whether 1.5 is
reachable here.
On a GPU the MoE runs the general decoder and the expert as one stacked, batched call
(``MoESam3D.stacked_pair``); on the CPU, where that measured slower, two calls.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(fn, device) -> float:
    _sync(device)
    t = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="vit_b_ori")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clicks", type=int, default=30)
    ap.add_argument("--whole-repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    load0 = os.getloadavg()[0]

    from medmoe.moe import Gate, GateConfig, MoEPredictor, MoESam3D
    from medmoe.sam3d import Sam3DPredictor, build_mask_decoder, build_sam3d

    torch.manual_seed(0)
    base = build_sam3d(args.model).to(device)
    s = base.config.img_size
    volume = torch.randn(s, s, s, generator=torch.Generator().manual_seed(1)).to(device)
    points, labels = np.array([[s / 2, s / 2, s / 2], [s / 3, s / 2, s / 2]]), np.array([1, 0])

    def moe_with(m: int) -> MoEPredictor:
        experts = {f"e{i}": build_mask_decoder(base.config) for i in range(m)}
        gate = Gate(config=GateConfig(embed_dim=base.config.prompt_dim, num_experts=m))
        return MoEPredictor(
            MoESam3D(base=base, experts=experts, gate=gate, tau=0.0).to(device).eval()
        )

    plain = Sam3DPredictor(base)
    plain.set_image(volume)
    moes = {m: moe_with(m) for m in (1, 15)}
    for p in moes.values():
        p._features, p._image_pe = plain._features, plain._image_pe  # the same embedding
    click = lambda p: p.predict(points=points, labels=labels)  # noqa: E731
    for p in (plain, *moes.values()):  # warm-up
        click(p)
    gate_only, expert_only = _parts(moes[1], points, labels)
    t = {"single": [], 1: [], 15: [], "gate": [], "expert": []}
    for _ in range(args.clicks):
        t["single"].append(_time(lambda: click(plain), device))
        t[1].append(_time(lambda: click(moes[1]), device))
        t[15].append(_time(lambda: click(moes[15]), device))
        t["gate"].append(_time(gate_only, device))
        t["expert"].append(_time(expert_only, device))
    med = {k: statistics.median(v) * 1e3 for k, v in t.items()}
    assert moes[1].predict(points=points, labels=labels).used_expert  # the expert really ran

    whole = {"plain": [], "moe": []}
    for _ in range(args.whole_repeats):
        whole["plain"].append(_time(lambda: (plain.set_image(volume), click(plain)), device))
        whole["moe"].append(_time(lambda: (moes[15].set_image(volume), click(moes[15])), device))
    wmed = {k: statistics.median(v) for k, v in whole.items()}

    _print_results(med, wmed, args=args, device=device, load0=load0)
    if device.type == "cpu" and args.threads == 2:
        _concurrency(moes[1], points, labels, args.clicks)
    if device.type == "cpu":
        _floors(moes[1], points, labels, rest=med["single"] - med["expert"], repeats=args.clicks)


def _print_results(med: dict, wmed: dict, *, args, device, load0: float) -> None:
    """The medians of the clicks (ms) and of the whole forwards (s), their ratios and verdicts."""
    print(
        f"1-min load average at start / end: {load0:.2f} / {os.getloadavg()[0]:.2f}; "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}"
    )
    print(
        f"machine: {platform.machine()} {platform.processor() or ''} threads={args.threads} "
        f"device={device} torch={torch.__version__} model={args.model}"
    )
    print(
        f"per-click median: single decoder {med['single']:.1f} ms | MoE, 1 expert {med[1]:.1f} ms | "
        f"MoE, 15 experts {med[15]:.1f} ms"
    )
    print(f"ratio MoE(1 expert) / single decoder : {_verdict(med[1] / med['single'], 1.5)}")
    print(f"ratio MoE(15 experts) / MoE(1 expert): {_verdict(med[15] / med[1], 1.05)}")
    print(
        f"what the MoE adds to a click: gate {med['gate']:.1f} ms + expert decoder "
        f"{med['expert']:.1f} ms = {med['gate'] + med['expert']:.1f} ms; a ratio <= 1.5 needs "
        f"<= {0.5 * med['single']:.1f} ms (half the single-decoder click)"
    )
    rest = med["single"] - med["expert"]  # the expert has the general decoder's architecture
    print(
        f"the plain click without its decoder: {rest:.1f} ms; with decoders that cost nothing "
        f"the ratio would be ({rest:.1f} + {med['gate']:.1f}) / {rest:.1f} = "
        f"{(rest + med['gate']) / rest:.2f}"
    )
    print(
        f"whole forward (encoder + 1 click) median: plain {wmed['plain']:.3f} s | MoE {wmed['moe']:.3f} s"
    )
    print(f"ratio whole MoE / plain              : {_verdict(wmed['moe'] / wmed['plain'], 1.1)}")


def _verdict(ratio: float, target: float) -> str:
    return f"{ratio:.3f}   (target <= {target}: {'met' if ratio <= target else 'MISSED'})"


def _concurrency(predictor, points, labels, clicks: int) -> None:
    """The general and the expert decoder one after the other on 2 intra-op threads, against
    both at once in two threads of 1 intra-op thread each (interleaved, medians): whether the
    two cores have time to spare for the second decoder."""
    from concurrent.futures import ThreadPoolExecutor

    emb, pe, sparse, dense = _decoder_inputs(predictor, points, labels)
    general, expert = predictor.moe.base.mask_decoder, predictor.moe.expert_at(1)

    def run(decoder, threads=None):
        if threads:  # the worker thread fixes its intra-op team size on its first call
            torch.set_num_threads(threads)
        with torch.inference_mode():
            decoder(emb, pe, sparse, dense)

    pool = ThreadPoolExecutor(1)
    pool.submit(run, expert, 1).result()

    def sequential():
        torch.set_num_threads(2)
        run(general), run(expert)

    def concurrent():
        torch.set_num_threads(1)
        job = pool.submit(run, expert)
        run(general)
        job.result()

    t = {"seq": [], "par": []}
    for _ in range(3 + clicks):
        t["seq"].append(_time(sequential, torch.device("cpu")))
        t["par"].append(_time(concurrent, torch.device("cpu")))
    torch.set_num_threads(2)
    seq, par = (statistics.median(v[3:]) * 1e3 for v in t.values())
    print(
        f"general + expert decoder: one after the other on 2 threads {seq:.1f} ms | at once, "
        f"two threads of 1: {par:.1f} ms (ratio {par / seq:.3f})"
    )


# The matrix products as they reach a dispatch mode under inference mode (``linear``, ``einsum``,
# ``matmul`` and SDPA are not decomposed there, so they are caught whole).
_MATRIX_OPS = {
    getattr(torch.ops.aten, name).default
    for name in (
        "linear", "einsum", "matmul", "mm", "addmm", "bmm", "baddbmm", "convolution",
        "scaled_dot_product_attention",
    )
}  # fmt: skip


class _Recorder(TorchDispatchMode):
    """Records the matrix products one call makes (op and arguments), to replay or count them."""

    def __init__(self) -> None:
        super().__init__()
        self.products: list[tuple] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _MATRIX_OPS:
            self.products.append((func, args, kwargs))
        return func(*args, **kwargs)


def _record(fn) -> list[tuple]:
    with torch.inference_mode(), _Recorder() as rec:
        fn()
    return rec.products


def _median_ms(fn, repeats: int) -> float:
    for _ in range(3):
        fn()
    return statistics.median(_time(fn, torch.device("cpu")) for _ in range(repeats)) * 1e3


def _replay_ms(products: list[tuple], repeats: int) -> float:
    """Median time of the recorded matrix products alone, back to back (warm caches)."""

    def run():
        with torch.inference_mode():
            for func, args, kwargs in products:
                func(*args, **kwargs)

    return _median_ms(run, repeats)


def _macs(products: list[tuple]) -> int:
    """Multiply-adds of the recorded linear/mm/addmm/bmm/baddbmm/matmul products. ``einsum``
    and SDPA (small, token-side) are left out, which only lowers the count."""
    aten, total = torch.ops.aten, 0
    for func, args, _ in products:
        if func in (aten.linear.default,):
            x, w = args[0], args[1]
            total += x.numel() * w.shape[0]
        elif func in (aten.mm.default, aten.bmm.default, aten.matmul.default):
            total += args[0].numel() * args[1].shape[-1]
        elif func in (aten.addmm.default, aten.baddbmm.default):
            total += args[1].numel() * args[2].shape[-1]
    return total


def _best_gemm_rate(config, repeats: int) -> float:
    """This machine's best float32 GEMM rate (GFLOP/s): the larger of the decoder's first
    upscaling GEMM's shape (from the config) and a 1024-cube."""
    n, c = config.grid_size, config.prompt_dim
    rates = []
    for m, k, o in ((n**3, c, 8 * (c // 4)), (1024, 1024, 1024)):
        a, w = torch.randn(m, k), torch.randn(k, o)
        rates.append(2 * m * k * o / _median_ms(lambda a=a, w=w: a @ w, repeats) / 1e6)
    return max(rates)


def _floors(predictor, points, labels, *, rest: float, repeats: int) -> None:
    """Two lower bounds of the MoE/plain click ratio on this machine, for the paper's experts.

    ratio = (R + G + 2D) / (R + D) rises with the gate G and, while G < R, with the decoder D,
    so floors of G and D bound it from below (R, the rest of the plain click, as measured). The
    floors: the decoder's and the gate's matrix products alone, replayed at their shapes; and
    their multiply-adds alone at this machine's best GEMM rate.
    Those multiply-adds are the upscaling GEMMs (each is followed by a GELU and all 32^3
    outputs feed the mask), the factored attention's image-side products (rank h*t, the least
    an exact attention between the image and t prompt tokens can do) and the token-side layers.
    """
    emb, pe, sparse, dense = _decoder_inputs(predictor, points, labels)
    expert, gate = predictor.moe.expert_at(1), predictor.moe.gate
    dec = _record(lambda: expert(emb, pe, sparse, dense))
    gat = _record(lambda: gate(emb, pe, sparse))
    d_mm, g_mm = _replay_ms(dec, repeats), _replay_ms(gat, repeats)
    rate = _best_gemm_rate(predictor.moe.base.config, repeats)
    gmac, gate_gmac = _macs(dec) / 1e9, _macs(gat) / 1e9
    d_flop, g_flop = 2 * gmac / rate * 1e3, 2 * gate_gmac / rate * 1e3
    print(
        f"floors: matrix products alone, replayed: decoder {d_mm:.2f} ms, gate {g_mm:.2f} ms: "
        f"ratio >= {_bound(rest, g_mm, d_mm):.3f}"
    )
    floor = _bound(rest, g_flop, d_flop)
    print(
        f"floors: multiply-adds at this machine's best GEMM rate ({rate:.0f} GFLOP/s): decoder "
        f"{gmac:.3f} GMAC {d_flop:.2f} ms, gate {gate_gmac:.3f} GMAC {g_flop:.2f} ms; with all "
        f"else free: ratio >= {floor:.3f} (1.5 reachable on this machine: "
        f"{'yes' if floor <= 1.5 else 'no'})"
    )


def _bound(rest: float, gate: float, decoder: float) -> float:
    """The lowest (R + G + 2D') / (R + D') over every D' >= ``decoder``, with G = ``gate``."""
    if gate >= rest:  # falling in D', towards 2
        return 2.0
    return (rest + gate + 2 * decoder) / (rest + decoder)


def _decoder_inputs(predictor, points, labels):
    """A decoder's inputs for this prompt on the predictor's embedding: emb, pe, sparse, dense."""
    pts, boxes, mask = predictor.prompt_tensors(points, labels)
    with torch.inference_mode():
        sparse, dense = predictor.moe.base.prompt_encoder(pts, boxes, mask)
    return predictor.features, predictor._image_pe, sparse, dense


def _parts(predictor, points, labels):
    """The gate alone and the expert decoder alone, on the predictor's embedding and prompt."""
    emb, pe, sparse, dense = _decoder_inputs(predictor, points, labels)
    gate, expert = predictor.moe.gate, predictor.moe.expert_at(1)

    def gate_only():
        with torch.inference_mode():
            gate(emb, pe, sparse)

    def expert_only():
        with torch.inference_mode():
            expert(emb, pe, sparse, dense)

    return gate_only, expert_only


if __name__ == "__main__":
    main()
