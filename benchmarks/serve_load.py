"""``medmoe serve`` under load: N concurrent sessions of M clicks each, over loopback HTTP.

Usage: ``python benchmarks/serve_load.py [--sessions 20] [--clicks 20]
[--checkpoint CKPT | --moe DIR] [--scan SCAN.nii.gz] [--threads 2]``

Starts ``medmoe serve`` in a subprocess (a real uvicorn server on 127.0.0.1) and drives it with
one thread and one HTTP connection per session: upload, clicks around the object (the first
positive, then alternating), download, delete. Without ``--checkpoint``/``--moe`` the model is
the ``tiny`` SAM-Med3D with seeded random weights; without ``--scan`` the scan is a synthetic
1 mm 160^3 volume with a bright ball. Reported, all from this one run:
- errors (the target is 0) and the p50 / p95 latency of the clicks after the first, and of the
  first clicks (which also run the image encoder);
- the same p50 with a single session alone (run first), and the ratio loaded / alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def make_scan(path: Path) -> tuple[int, int, int]:
    from medmoe.data import save_volume

    rng = np.random.default_rng(0)
    grid = np.indices((160,) * 3).transpose(1, 2, 3, 0)
    ball = np.linalg.norm(grid - 80, axis=-1) <= 18
    image = rng.normal(100, 20, (160,) * 3) + 300 * ball
    save_volume(path, image.astype(np.float32), np.diag([1.0, 1.0, 1.0, 1.0]))
    return (80, 80, 80)


def start_server(args, tmp: Path) -> tuple[subprocess.Popen, str]:
    import httpx

    model = ["--moe", str(args.moe)] if args.moe else ["--checkpoint", str(args.checkpoint)]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    cmd = [sys.executable, "-m", "medmoe", "serve", *model, "--port", str(port)]
    cmd += ["--data-dir", str(tmp / "data"), "--max-sessions", str(args.sessions + 1)]
    proc = subprocess.Popen(cmd, env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            httpx.get(url + "/api/info", timeout=1)
            return proc, url
        except httpx.HTTPError:
            if proc.poll() is not None:
                raise SystemExit("the server exited") from None
            time.sleep(0.1)
    raise SystemExit("the server did not start")


def one_session(url, scan, centre, clicks, seed, out, errors, barrier=None) -> None:
    from medmoe.serve.client import MedmoeClient

    rng = np.random.default_rng(seed)
    try:
        with MedmoeClient(url) as c:
            sid = c.upload(scan)
            if barrier is not None:
                barrier.wait()
            for n in range(clicks):
                point = np.clip(np.asarray(centre) + rng.integers(-8, 9, 3), 0, None)
                t = time.perf_counter()
                c.click(sid, point.tolist(), positive=n == 0 or n % 2 == 1)
                out.append((n, time.perf_counter() - t))
            c.download(sid, Path(scan).with_name(f"mask-{seed}.nii.gz"))
            c.close_session(sid)
    except Exception as err:  # counted and reported: the target is no error at all
        errors.append(f"session {seed}: {type(err).__name__}: {err}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--clicks", type=int, default=20)
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--checkpoint", type=Path)
    group.add_argument("--moe", type=Path)
    ap.add_argument("--scan", type=Path, help="a NIfTI scan (its centre voxel is clicked)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the server")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if not args.checkpoint and not args.moe:
            import torch

            from medmoe.sam3d import build_sam3d, save_sam3d_checkpoint

            torch.manual_seed(0)
            args.checkpoint = tmp / "tiny.pth"
            save_sam3d_checkpoint(build_sam3d("tiny"), args.checkpoint)
        if args.scan:
            import nibabel as nib

            scan = tmp / ("scan" + ("".join(args.scan.suffixes[-2:]) or ".nii.gz"))
            scan.write_bytes(args.scan.read_bytes())
            centre = [n // 2 for n in nib.load(scan).shape[:3]]
        else:
            scan = tmp / "scan.nii.gz"
            centre = make_scan(scan)
        proc, url = start_server(args, tmp)
        try:
            alone, errors = [], []
            one_session(url, scan, centre, args.clicks, 999, alone, errors)
            loaded: list = []
            barrier = threading.Barrier(args.sessions)
            threads = [
                threading.Thread(
                    target=one_session,
                    args=(url, scan, centre, args.clicks, s, loaded, errors, barrier),
                )
                for s in range(args.sessions)
            ]
            start = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - start
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    later = [dt for n, dt in loaded if n > 0]
    first = [dt for n, dt in loaded if n == 0]
    alone_later = [dt for n, dt in alone if n > 0]
    result = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}",
        "model": str(args.moe or args.checkpoint.name),
        "sessions": args.sessions,
        "clicks_per_session": args.clicks,
        "clicks_done": len(loaded),
        "errors": len(errors),
        "wall_s": round(wall, 2),
        "click_p50_ms": round(1000 * percentile(later, 50), 1),
        "click_p95_ms": round(1000 * percentile(later, 95), 1),
        "first_click_p50_ms": round(1000 * percentile(first, 50), 1),
        "first_click_p95_ms": round(1000 * percentile(first, 95), 1),
        "alone_click_p50_ms": round(1000 * percentile(alone_later, 50), 1),
        "alone_first_click_ms": round(1000 * alone[0][1], 1) if alone else None,
    }
    result["ratio_loaded_over_alone_p50"] = round(
        result["click_p50_ms"] / result["alone_click_p50_ms"], 2
    )
    print(json.dumps(result, indent=2))
    for e in errors[:5]:
        print("error:", e)
    if errors or len(loaded) != args.sessions * args.clicks:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
