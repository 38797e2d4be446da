"""SAM-Med3D encoder against the GEMM floor of this machine, and where a click's time goes.

Usage: ``python benchmarks/sam3d_floor.py [--model vit_b_ori] [--threads 2] [--repeats 9]
[--clicks 30]``

In one run, with seeded random weights (non-zero biases and tables) and a seeded volume:

1. The encoder's GEMMs are listed from the config (nothing typed in): the four linear layers of
   every block, the attention products ``q k^T`` and ``P v`` (512 real keys, plus the one virtual
   key of the exact fast path in window blocks), the patch embedding and the neck convolutions
   as the GEMMs they are. Their multiply-accumulate count is the sum of ``m k n``.
2. The floor: the same GEMMs run alone, in encoder order, with the model's own weight matrices
   (so weights stream from memory as in the encoder), through ``torch.mm``/``torch.bmm``. Its
   time is the least any exact implementation that runs these products can take here; the rate
   it implies is this machine's GEMM rate at the encoder's shapes.
3. The fast exact encoder, timed interleaved with the floor (floor, encoder, floor, ...), medians.
4. Per click of ``Sam3DPredictor.predict`` (a point and the previous mask fed back): prompt
   encoder, mask decoder, and the 128^3 mask; the published post-processing (full trilinear
   upsampling, then ``> 0``) is timed beside it.

The load average is printed at the start and the end: other processes share the 2 cores. Under
such load, libgomp's spinning threads (the default) slow every parallel region by waiting for a
descheduled sibling, the encoder's ~300 regions far more than the floor's ~80 big GEMMs; with
``OMP_WAIT_POLICY=PASSIVE`` both sides degrade alike. The header says which policy ran.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from typing import NamedTuple

import torch
import torch.nn.functional as F

TRILINEAR = {"mode": "trilinear", "align_corners": False}


class Gemm(NamedTuple):
    group: str  # "linear", "attention", "patch", "neck"
    batch: int  # independent products of this shape (heads)
    m: int
    k: int
    n: int

    @property
    def macs(self) -> int:
        return self.batch * self.m * self.k * self.n


def encoder_gemms(cfg) -> list[Gemm]:
    """Every GEMM of the fast exact encoder of ``cfg``, in execution order."""
    t, d, h = cfg.grid_size**3, cfg.encoder_dim, cfg.encoder_heads
    hidden, c = 4 * d, d // h
    out = [Gemm("patch", 1, t, cfg.patch_size**3, d)]
    for i in range(cfg.encoder_depth):
        keys = t if i in cfg.global_attn_indexes else t + 1  # + the virtual padding key
        out += [
            Gemm("linear", 1, t, d, 3 * d),  # qkv
            Gemm("attention", h, t, c, keys),  # q k^T
            Gemm("attention", h, t, keys, c),  # P v
            Gemm("linear", 1, t, d, d),  # proj
            Gemm("linear", 1, t, d, hidden),  # mlp.lin1
            Gemm("linear", 1, t, hidden, d),  # mlp.lin2
        ]
    out += [
        Gemm("neck", 1, t, d, cfg.prompt_dim),
        Gemm("neck", 1, t, 27 * cfg.prompt_dim, cfg.prompt_dim),
    ]
    return out


def gemm_operands(gemms: list[Gemm], encoder) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Inputs for each GEMM; linear layers use the encoder's own weight matrices (transposed
    views, as ``F.linear`` passes them)."""
    linears = [
        lin
        for blk in encoder.blocks
        for lin in (blk.attn.qkv, blk.attn.proj, blk.mlp.lin1, blk.mlp.lin2)
    ]
    gen = torch.Generator().manual_seed(2)
    ops, li = [], 0
    for g in gemms:
        a = torch.randn(g.batch, g.m, g.k, generator=gen)
        if g.group == "linear":
            b = linears[li].weight.detach().t()[None]
            li += 1
        else:
            b = torch.randn(g.batch, g.k, g.n, generator=gen)
        ops.append((a, b))
    return ops


def run_gemms(gemms, ops) -> dict[str, float]:
    """Seconds per group for one pass over all GEMMs."""
    spent: dict[str, float] = {}
    for g, (a, b) in zip(gemms, ops, strict=True):
        t0 = time.perf_counter()
        if g.batch == 1:
            torch.mm(a[0], b[0])
        else:
            torch.bmm(a, b)
        spent[g.group] = spent.get(g.group, 0.0) + time.perf_counter() - t0
    return spent


def timed(fn, *args, **kwargs) -> float:
    t0 = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - t0


def model_and_volume(name: str):
    from medmoe.sam3d import build_sam3d

    model = build_sam3d(name)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
    return model.eval(), torch.randn(1, 1, 128, 128, 128, generator=gen)


def compiled_encoder(enc):
    """``torch.compile`` of the encoder (inductor); prints the cost of the first call."""
    fn = torch.compile(enc)
    t0 = time.perf_counter()
    fn(torch.zeros(1, 1, enc.img_size, enc.img_size, enc.img_size))
    print(f"torch.compile: first call (compilation) {time.perf_counter() - t0:.1f} s")
    return fn


def encoder_vs_floor(model, volume, repeats: int, *, compile_too: bool = False) -> None:
    cfg, enc = model.config, model.image_encoder
    gemms = encoder_gemms(cfg)
    ops = gemm_operands(gemms, enc)
    floors, encs, comp = [], [], []
    fn = compiled_encoder(enc) if compile_too else None
    run_gemms(gemms, ops), enc(volume)  # warm-up
    for _ in range(repeats):
        floors.append(run_gemms(gemms, ops))
        encs.append(timed(enc, volume))
        if fn is not None:
            comp.append(timed(fn, volume))
    if comp:
        print(
            f"torch.compile'd encoder, median: {statistics.median(comp) * 1e3:.1f} ms "
            f"(eager {statistics.median(encs) * 1e3:.1f} ms, same run)"
        )
    groups = ("linear", "attention", "patch", "neck")
    print(f"{'GEMM group':<12}{'GMAC':>8}{'floor ms':>10}{'GFLOP/s':>9}")
    total_macs = total_s = 0.0
    for grp in groups:
        macs = sum(g.macs for g in gemms if g.group == grp)
        sec = statistics.median(f[grp] for f in floors)
        total_macs, total_s = total_macs + macs, total_s + sec
        print(f"{grp:<12}{macs / 1e9:>8.2f}{sec * 1e3:>10.1f}{2 * macs / sec / 1e9:>9.0f}")
    floor = statistics.median(sum(f.values()) for f in floors)
    lin = statistics.median(f["linear"] for f in floors)
    enc_s = statistics.median(encs)
    print(
        f"{'all':<12}{total_macs / 1e9:>8.2f}{floor * 1e3:>10.1f}{2 * total_macs / floor / 1e9:>9.0f}"
    )
    print(
        f"fast exact encoder, median of {repeats}: {enc_s * 1e3:.1f} ms (min {min(encs) * 1e3:.1f})"
    )
    print(f"encoder / floor (all GEMMs)         : {enc_s / floor:.2f}   (target <= 1.5, aim 1.2)")
    print(f"encoder / floor (linear layers only): {enc_s / lin:.2f}")


def click_split(model, volume, clicks: int) -> None:
    from medmoe.sam3d import Sam3DPredictor
    from medmoe.sam3d.upsample import positive_box, upsample_logits, upsampled_mask

    pred = Sam3DPredictor(model)
    pred.set_image(volume)
    size, pe = pred.size, pred._image_pe
    prev = pred.predict(points=[[40, 64, 64]], labels=[1]).low_res_logits
    t: dict[str, list[float]] = {
        k: [] for k in ("predict", "prompt", "decoder", "mask", "full", "fast")
    }
    for i in range(clicks + 3):
        point = [[40 + i % 20, 64, 64]]
        dt = {"predict": timed(pred.predict, points=point, labels=[1], mask_input=prev)}
        t0 = time.perf_counter()
        pts, boxes, mask_in = pred.prompt_tensors(point, [1], None, prev)
        sparse, dense = model.prompt_encoder(pts, boxes, mask_in)
        t1 = time.perf_counter()
        low, _ = model.mask_decoder(pred.features, pe, sparse, dense)
        t2 = time.perf_counter()
        upsampled_mask(low, size)
        t3 = time.perf_counter()
        dt |= {"prompt": t1 - t0, "decoder": t2 - t1, "mask": t3 - t2}
        dt["full"] = timed(lambda x: F.interpolate(x, size=(size,) * 3, **TRILINEAR) > 0, low)
        dt["fast"] = timed(lambda x: upsample_logits(x, size) > 0, low)
        if i >= 3:
            for k, v in dt.items():
                t[k].append(v)
        prev = low
    med = {k: statistics.median(v) * 1e3 for k, v in t.items()}
    box = positive_box(prev)
    side = [hi - lo for lo, hi in box] if box else [0, 0, 0]
    print(f"per click (median of {clicks}, a point + the previous mask):")
    print(f"  prompt encoder (incl. validation) {med['prompt']:6.2f} ms")
    print(f"  mask decoder                      {med['decoder']:6.2f} ms")
    print(
        f"  128^3 mask (positive box only)    {med['mask']:6.2f} ms   (last click: "
        f"{float((prev > 0).float().mean()):.1%} of low-res voxels > 0, box {side})"
    )
    print(f"  [published: F.interpolate + > 0  {med['full']:6.2f} ms]")
    print(f"  [medmoe's 4x upsampling + > 0     {med['fast']:6.2f} ms]")
    print(f"  predict, end to end               {med['predict']:6.2f} ms   (target <= 25 ms)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="vit_b_ori")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--clicks", type=int, default=30)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile(encoder)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"load average at start: {os.getloadavg()[0]:.2f} (1 min); OMP_WAIT_POLICY="
        f"{os.environ.get('OMP_WAIT_POLICY', '(unset: libgomp spins)')}"
    )
    print(
        f"SAM-Med3D {args.model}, 128^3, fp32, cpu, {args.threads} threads; {platform.machine()} "
        f"{os.cpu_count()} cores, torch {torch.__version__}"
    )
    model, volume = model_and_volume(args.model)
    with torch.inference_mode():
        encoder_vs_floor(model, volume, args.repeats, compile_too=args.compile)
        click_split(model, volume, args.clicks)
    print(f"load average at end: {os.getloadavg()[0]:.2f} (1 min)")


if __name__ == "__main__":
    main()
