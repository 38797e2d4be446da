"""SAM-Med3D speed: fast exact encoder vs the literal padded encoder, per-click latency, memory.

Usage: ``python benchmarks/sam3d_speed.py [--model vit_b_ori] [--threads 2] [--device cpu|cuda]
[--dtype fp32|bf16] [--repeats 3] [--clicks 20]``

Every measurement runs in a fresh worker process (so that its peak resident memory is its own)
with the same seeded random weights and the same seeded input volume; the encoder timings of the
two paths are interleaved (fast, literal, fast, literal, ...) so that both see the same machine
load, and the best of ``--repeats`` is kept. The table prints the ratios measured in this run.
"""

from __future__ import annotations

import argparse
import json
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
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--clicks", type=int, default=20)
    ap.add_argument("--worker", choices=["fast", "literal", "click"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return

    fast, literal = [], []
    for _ in range(args.repeats):
        fast.append(run_worker(args, "fast"))
        literal.append(run_worker(args, "literal"))
    click = run_worker(args, "click")
    f = min(fast, key=lambda r: r["seconds"])
    lit = min(literal, key=lambda r: r["seconds"])
    cpu = platform.processor() or platform.machine()
    print(
        f"SAM-Med3D {args.model}, 128^3, {args.dtype}, device {args.device}, {args.threads} threads"
    )
    print(f"machine: {cpu}, torch {torch.__version__}, best of {args.repeats}")
    print(f"{'measurement':<34}{'value':>12}{'peak MB':>10}")
    print(f"{'encoder, literal padded (s)':<34}{lit['seconds']:>12.3f}{lit['peak_mb']:>10.0f}")
    print(f"{'encoder, fast exact (s)':<34}{f['seconds']:>12.3f}{f['peak_mb']:>10.0f}")
    print(
        f"{'per-click predict, median (ms)':<34}{click['seconds'] * 1e3:>12.1f}{click['peak_mb']:>10.0f}"
    )
    print(f"{'per-click predict, p95 (ms)':<34}{click['p95'] * 1e3:>12.1f}")
    print(f"ratio encoder fast / literal: {f['seconds'] / lit['seconds']:.3f}  (target <= 0.2)")
    print(f"ratio peak memory fast / literal: {f['peak_mb'] / lit['peak_mb']:.3f}")
    print(f"per-click latency: {click['seconds'] * 1e3:.1f} ms  (target <= 50 ms)")


if __name__ == "__main__":
    main()
