"""SAM-Med3D speed: fast exact encoder vs the literal padded encoder, per-click latency, memory.

Usage: ``python benchmarks/sam3d_speed.py [--model vit_b_ori] [--threads 2] [--device cpu|cuda]
[--dtype fp32|bf16] [--repeats 5] [--clicks 20] [--runtime torch|onnx]``

Every measurement runs in a fresh worker process (so that its peak resident memory is its own)
with the same seeded random weights and the same seeded input volume; the encoder timings of the
two paths are interleaved (fast, literal, fast, literal, ...) so that both see the same machine
load, and the median of ``--repeats`` is kept. The table prints the ratios measured in this run.

``--runtime onnx`` instead exports the model with ``medmoe.export`` (float32 and int8 encoders)
and times onnxruntime (CPU) beside torch in one process, interleaved, medians: the encoder, and a
click's prompt encoder + mask decoder (low-resolution logits). With ``--crops`` (the ``crops``
folder of a ``medmoe demo`` run: real MNI152 / CAT12 crops) it reports the Dice agreement of the
int8 encoder's masks with float32's, one click at each structure's centre;
``--checkpoint`` takes that run's trained ``general.pth`` instead of random weights.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _model_and_input(args):
    from medmoe.sam3d import build_sam3d

    torch.manual_seed(0)
    model = build_sam3d(args.model)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # random weights with non-zero biases and rel-pos tables
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
    device = torch.device(args.device)
    model = model.to(device=device, dtype=DTYPES[args.dtype]).eval()
    vol = torch.randn(1, 1, 128, 128, 128, generator=gen).to(device, DTYPES[args.dtype])
    return model, vol, device


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def worker(args) -> dict:
    torch.set_num_threads(args.threads)
    model, vol, device = _model_and_input(args)
    result: dict = {}
    with torch.inference_mode():
        if args.worker in ("fast", "literal"):
            reference = args.worker == "literal"
            model.image_encoder(vol, reference=reference)  # warm-up
            _sync(device)
            t0 = time.perf_counter()
            model.image_encoder(vol, reference=reference)
            _sync(device)
            result["seconds"] = time.perf_counter() - t0
            result["load"] = os.getloadavg()[0]
        else:  # per-click latency of predict (prompt encoder + decoder + upsampling to 128^3)
            from medmoe.sam3d import Sam3DPredictor

            pred = Sam3DPredictor(model)
            pred.set_image(vol)
            prev, times = None, []
            for i in range(args.clicks + 2):
                _sync(device)
                t0 = time.perf_counter()
                out = pred.predict(points=[[40 + i, 64, 64]], labels=[1], mask_input=prev)
                _sync(device)
                times.append(time.perf_counter() - t0)
                prev = out.low_res_logits
            result["seconds"] = statistics.median(times[2:])
            result["p95"] = sorted(times[2:])[int(0.95 * (len(times) - 3))]
    result["peak_mb"] = _peak_mb(device)
    return result


def run_worker(args, mode: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", mode]
    for key in ("model", "threads", "device", "dtype", "clicks"):
        cmd += [f"--{key}", str(getattr(args, key))]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="vit_b_ori")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--clicks", type=int, default=20)
    ap.add_argument("--runtime", choices=["torch", "onnx"], default="torch")
    ap.add_argument("--checkpoint", help="(onnx) a checkpoint instead of random weights")
    ap.add_argument(
        "--onnx-spin", action="store_true", help="(onnx) let onnxruntime's threads spin"
    )
    ap.add_argument("--crops", help="(onnx) folder of the demo's *_eval_*.npz crops (int8 Dice)")
    ap.add_argument("--worker", choices=["fast", "literal", "click"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    if args.runtime == "onnx":
        compare_onnx(args)
        return

    fast, literal = [], []
    for _ in range(args.repeats):
        fast.append(run_worker(args, "fast"))
        literal.append(run_worker(args, "literal"))
    click = run_worker(args, "click")
    f = _median(fast)
    lit = _median(literal)
    cpu = platform.processor() or platform.machine()
    print(
        f"SAM-Med3D {args.model}, 128^3, {args.dtype}, device {args.device}, {args.threads} threads"
    )
    print(
        f"machine: {cpu}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"median of {args.repeats}; 1-min load average during the encoder runs: "
        f"{min(r['load'] for r in fast + literal):.1f}-{max(r['load'] for r in fast + literal):.1f}"
    )
    print(f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}")
    print(f"{'measurement':<34}{'value':>12}{'peak MB':>10}")
    print(f"{'encoder, literal padded (s)':<34}{lit['seconds']:>12.3f}{lit['peak_mb']:>10.0f}")
    print(f"{'encoder, fast exact (s)':<34}{f['seconds']:>12.3f}{f['peak_mb']:>10.0f}")
    print(
        f"{'per-click predict, median (ms)':<34}{click['seconds'] * 1e3:>12.1f}{click['peak_mb']:>10.0f}"
    )
    print(f"{'per-click predict, p95 (ms)':<34}{click['p95'] * 1e3:>12.1f}")
    print(f"ratio encoder fast / literal: {f['seconds'] / lit['seconds']:.3f}  (target <= 0.2)")
    print(f"ratio peak memory fast / literal: {f['peak_mb'] / lit['peak_mb']:.3f}")
    print(f"per-click latency: {click['seconds'] * 1e3:.1f} ms  (target <= 25 ms)")


def _onnx_setup(args, folder: str):
    from medmoe.export import OnnxSam3D, export_onnx
    from medmoe.sam3d import load_sam3d

    if args.checkpoint:
        model = load_sam3d(args.checkpoint)
        s = model.config.img_size
        vol = torch.randn(1, 1, s, s, s, generator=torch.Generator().manual_seed(1))
    else:
        model, vol, _ = _model_and_input(args)
    t0 = time.perf_counter()
    export_onnx(folder, model=model, quantize="int8")
    print(f"export (float32 + int8 encoder): {time.perf_counter() - t0:.1f} s")
    # Interleaved with torch in one process: onnxruntime's threads must not spin between calls
    # (they would take the cores from torch's next call; torch's own idle threads, libgomp's,
    # spin only briefly). `--onnx-spin` keeps onnxruntime's default to show the difference.
    rt32 = OnnxSam3D(folder, threads=args.threads, spin=args.onnx_spin)
    rt8 = OnnxSam3D(folder, int8=True, threads=args.threads, spin=args.onnx_spin)
    return model, vol, rt32, rt8


def _timed(fn, *a, **kw) -> float:
    t0 = time.perf_counter()
    fn(*a, **kw)
    return time.perf_counter() - t0


def compare_onnx(args) -> None:
    """onnxruntime vs torch, interleaved in one process; int8 Dice agreement on real crops."""
    import tempfile

    torch.set_num_threads(args.threads)
    print(
        f"load average at start: {os.getloadavg()[0]:.2f}; "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}; "
        f"onnxruntime threads spin between calls: {'yes' if args.onnx_spin else 'no'}"
    )
    with tempfile.TemporaryDirectory() as folder, torch.inference_mode():
        model, vol, rt32, rt8 = _onnx_setup(args, folder)
        v = vol.numpy()
        enc = {"torch": [], "onnxruntime fp32": [], "onnxruntime int8": []}
        for fn in (model.image_encoder, rt32.embed, rt8.embed):
            fn(vol if fn is model.image_encoder else v)  # warm-up
        for _ in range(args.repeats):
            enc["torch"].append(_timed(model.image_encoder, vol))
            enc["onnxruntime fp32"].append(_timed(rt32.embed, v))
            enc["onnxruntime int8"].append(_timed(rt8.embed, v))
        emb = model.image_encoder(vol)
        clicks = _onnx_clicks(model, rt32, emb, args.clicks)
        print(
            f"{args.model if not args.checkpoint else args.checkpoint}, 128^3, {args.threads} "
            f"threads, torch {torch.__version__}; medians of {args.repeats} encoder runs and "
            f"{args.clicks} clicks, interleaved"
        )
        for name, ts in enc.items():
            print(f"encoder, {name:<18}{statistics.median(ts):8.3f} s")
        for name, ts in clicks.items():
            print(f"click (prompt enc. + decoder), {name:<6}{statistics.median(ts) * 1e3:8.1f} ms")
        rel = float((torch.from_numpy(rt32.embed(v)) - emb).abs().max() / emb.abs().max())
        rel8 = float((torch.from_numpy(rt8.embed(v)) - emb).abs().max() / emb.abs().max())
        print(f"embedding max relative difference from torch: fp32 {rel:.1e}, int8 {rel8:.1e}")
        if args.crops:
            _int8_agreement(model, rt32, rt8, args.crops)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


def _onnx_clicks(model, rt, emb, clicks: int) -> dict[str, list[float]]:
    out = {"torch": [], "onnx": []}
    e_np, prev = emb.numpy(), None
    for i in range(clicks + 2):
        pts = torch.tensor([[[40.0 + i % 20, 64, 64]]])
        lab = torch.ones(1, 1, dtype=torch.long)
        t0 = time.perf_counter()
        low, _ = model.decode(emb, points=(pts, lab), mask_input=prev)
        t1 = time.perf_counter()
        rt.decode(
            e_np,
            points=pts[0].numpy(),
            labels=[1],
            mask_input=None if prev is None else prev.numpy(),
        )
        t2 = time.perf_counter()
        if i >= 2:
            out["torch"].append(t1 - t0)
            out["onnx"].append(t2 - t1)
        prev = low
    return out


def _int8_agreement(model, rt32, rt8, crops: str) -> None:
    """Dice of the int8 encoder's mask with float32's (and of each with the label), one click at
    the label voxel nearest the label's centre of mass, the float32 decoder for both."""
    from pathlib import Path

    import numpy as np

    from medmoe.sam3d.upsample import upsampled_mask

    def dice(a, b) -> float:
        s = a.sum() + b.sum()
        return 1.0 if s == 0 else float(2 * (a & b).sum() / s)

    rows = []
    for path in sorted(Path(crops).glob("*_eval_*.npz")):
        with np.load(path) as z:
            image = z["image"].astype(np.float32)
            label = np.unpackbits(z["label"])[: image.size].reshape(image.shape).astype(bool)
        idx = np.argwhere(label)
        point = idx[np.argmin(((idx - idx.mean(0)) ** 2).sum(1))][None].astype(np.float32)
        masks, lows = [], []
        for rt in (rt32, rt8):
            low, _ = rt32.decode(rt.embed(image), points=point, labels=[1])
            lows.append(low)
            masks.append(upsampled_mask(torch.from_numpy(low), image.shape[0])[0, 0].numpy())
        rel = float(np.abs(lows[1] - lows[0]).max() / np.abs(lows[0]).max())
        # A model whose masks are empty or full says little at threshold 0; thresholding both
        # at the median fp32 logit puts half the crop on each side of the boundary.
        thr = float(np.median(lows[0]))
        half = [
            upsampled_mask(torch.from_numpy(lo - thr), image.shape[0])[0, 0].numpy() for lo in lows
        ]
        rows.append(
            (dice(masks[1], masks[0]), dice(masks[0], label), dice(masks[1], label), rel,
             masks[0].mean(), float((masks[0] != masks[1]).mean()), dice(half[1], half[0]))
        )  # fmt: skip
    d = np.array(rows)
    print(f"int8 vs float32 on {len(rows)} eval crops of {crops} (one click each):")
    print(f"  Dice(int8 mask, fp32 mask): mean {d[:, 0].mean():.4f}, min {d[:, 0].min():.4f}")
    print(f"  voxels that differ: mean {d[:, 5].mean():.2e}, max {d[:, 5].max():.2e}")
    print(
        f"  Dice at the median fp32 logit as threshold (half the crop positive): mean "
        f"{d[:, 6].mean():.4f}, min {d[:, 6].min():.4f}"
    )
    print(
        f"  fp32 mask fraction of the crop: mean {d[:, 4].mean():.3f}, "
        f"{int((d[:, 4] > 0).sum())} of {len(rows)} non-empty"
    )
    print(
        f"  low-res logits, max relative difference int8 vs fp32: mean {d[:, 3].mean():.1e}, "
        f"max {d[:, 3].max():.1e}"
    )
    print(f"  Dice with the label: fp32 mean {d[:, 1].mean():.4f}, int8 mean {d[:, 2].mean():.4f}")


def _median(results: list[dict]) -> dict:
    """The run with the median time (its own peak memory alongside)."""
    return sorted(results, key=lambda r: r["seconds"])[len(results) // 2]


if __name__ == "__main__":
    main()
