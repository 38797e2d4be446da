"""``medmoe serve`` under the review's resource attacks: how fast and how cheaply they are refused.

Starts ``medmoe serve`` (a tiny model, random weights) on a free loopback port and sends:

- the 2 MB ``.nii.gz`` that inflates to 1024 x 1024 x 512 float32 (2 GiB), as the viewer's raw
  upload, as MONAI Label's ``/session/`` and as ``/datastore/``: target refused in < 2 s each,
  with the server's peak RSS up < 200 MB (issue 25);
- 40 concurrent bogus logins against a users file of 600,000-iteration hashes (``--auth``), after
  the client's failures are used up: the server's CPU seconds for them, against one hash's.

The peak RSS is reset through ``/proc/PID/clear_refs`` before each attack. Prints one JSON
record with ratios measured in this run and ``met``/``MISSED`` computed from them:

    python benchmarks/serve_attacks.py > benchmarks/results/serve_attacks_cpu.txt
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import platform
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import httpx
import numpy as np

from serve_load import wait_until_up  # run as `python benchmarks/serve_attacks.py`

TARGET_S = 2.0
TARGET_MB = 200.0


def gzip_bomb(path: Path, shape=(1024, 1024, 512)) -> bytes:
    import nibabel as nib

    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.float32)
    header["vox_offset"] = 352
    comp = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    total, block = int(np.prod(shape)) * 4, bytes(64 << 20)
    with open(path, "wb") as fh:
        fh.write(comp.compress(header.binaryblock + bytes(4)))
        for start in range(0, total, len(block)):
            fh.write(comp.compress(block[: min(len(block), total - start)]))
        fh.write(comp.flush())
    return path.read_bytes()


def start(args: list[str], env: dict | None = None) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "medmoe", "serve", "--port", str(port), *args]
    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    wait_until_up(proc, url + "/auth/")
    return proc, url


def proc_status(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    out["cpu_s"] = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    return out


def bomb_attacks(proc: subprocess.Popen, url: str, bomb: bytes) -> dict:
    from medmoe.serve.monailabel.multipart import encode_form

    def multipart(field: str) -> tuple[dict, bytes]:
        ctype, body = encode_form(
            [("params", None, "application/json", b"{}"), (field, "big.nii.gz", "x", bomb)]
        )
        return {"content-type": ctype}, body

    (s_head, s_body), (d_head, d_body) = multipart("files"), multipart("file")
    routes = {
        "viewer": lambda h: h.post("/api/sessions", params={"filename": "b.nii.gz"}, content=bomb),
        "session": lambda h: h.put("/session/", content=s_body, headers=s_head),
        "datastore": lambda h: h.put(
            "/datastore/", params={"image": "b"}, content=d_body, headers=d_head
        ),
    }
    out = {}
    with httpx.Client(base_url=url, timeout=120) as http:
        for name, send in routes.items():
            Path(f"/proc/{proc.pid}/clear_refs").write_text("5")
            before = proc_status(proc.pid)["VmRSS"]
            start_t = time.perf_counter()
            r = send(http)
            seconds = time.perf_counter() - start_t
            growth = proc_status(proc.pid)["VmHWM"] - before
            out[name] = {
                "status": r.status_code,
                "s": round(seconds, 3),
                "peak_mb": round(growth, 1),
            }
    return out


def login_attack(bundle_args: list[str], tmp: Path) -> dict:
    from medmoe.serve.auth import hash_password

    users = tmp / "users.txt"
    users.write_text(f"alice:{hash_password('a long password here')}\n")
    token = secrets.token_urlsafe(32)
    args = [*bundle_args, "--data-dir", str(tmp / "auth"), "--auth", "--users", str(users)]
    proc, url = start(args, env={"MEDMOE_SERVE_TOKEN": token})
    try:
        t = time.perf_counter()
        hashlib.pbkdf2_hmac("sha256", b"x", b"0123456789abcdef", 600_000)
        one_hash_s = time.perf_counter() - t

        def login(i: int) -> int:
            body = {"username": f"u{i}", "password": "x", "grant_type": "password"}
            return httpx.post(url + "/auth/token", data=body, timeout=60).status_code

        first = [login(i) for i in range(5)]  # the client's allowance of failures
        cpu0 = proc_status(proc.pid)["cpu_s"]
        with concurrent.futures.ThreadPoolExecutor(40) as pool:
            codes = list(pool.map(login, range(40)))
        cpu = proc_status(proc.pid)["cpu_s"] - cpu0
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return {
        "first_five": first,
        "burst_statuses": sorted(set(codes)),
        "burst_cpu_s": round(cpu, 3),
        "one_hash_s": round(one_hash_s, 3),
        "burst_cpu_in_hashes": round(cpu / one_hash_s, 2),
    }


def main() -> None:
    import torch

    from medmoe.sam3d import build_sam3d, save_sam3d_checkpoint

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        torch.manual_seed(0)
        save_sam3d_checkpoint(build_sam3d("tiny"), tmp / "tiny.pth")
        model = ["--checkpoint", str(tmp / "tiny.pth")]
        bomb = gzip_bomb(tmp / "bomb.nii.gz")
        proc, url = start([*model, "--data-dir", str(tmp / "data")])
        try:
            bombs = bomb_attacks(proc, url, bomb)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        logins = login_attack(model, tmp)
    worst_s = max(b["s"] for b in bombs.values())
    worst_mb = max(b["peak_mb"] for b in bombs.values())
    record = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}",
        "bomb_bytes": len(bomb),
        "bomb": bombs,
        "bomb_worst_s_over_target": round(worst_s / TARGET_S, 3),
        "bomb_worst_peak_mb_over_target": round(worst_mb / TARGET_MB, 3),
        "bomb_refused_all_413": all(b["status"] == 413 for b in bombs.values()),
        "logins": logins,
    }
    met = record["bomb_refused_all_413"] and worst_s < TARGET_S and worst_mb < TARGET_MB
    record["target"] = f"refused < {TARGET_S} s, peak RSS < {TARGET_MB} MB: " + (
        "met" if met else "MISSED"
    )
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
