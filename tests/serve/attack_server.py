"""A real ``medmoe serve`` process on a free loopback port, and the files an attacker sends.

Used by ``test_attacks.py``: the server runs as its own process (``python -m medmoe.cli.main
serve``, so ``PYTHONPATH`` chooses the code under test), and its memory and CPU are measured
from ``/proc`` and its log read as a user would.
"""

from __future__ import annotations

import gzip
import os
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import httpx
import nibabel as nib
import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``medmoe serve ARGS`` on 127.0.0.1; ``log`` holds its stdout and stderr."""

    def __init__(self, args: list[str], *, tmp: Path, env: dict | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"serve-{self.port}.log"
        cmd = [sys.executable, "-m", "medmoe.cli.main", "serve", "--port", str(self.port), *args]
        full_env = {**os.environ, **(env or {})}
        full_env.pop("PYTHONUNBUFFERED", None)  # stdout is a file: block-buffered, as for users
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(cmd, env=full_env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"medmoe serve exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/auth/", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("medmoe serve did not start")

    def client(self, token: str | None = None, **kw) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, timeout=kw.pop("timeout", 30), headers=headers)

    def status(self) -> dict[str, int]:
        """``VmRSS``, ``VmHWM`` (kB) and CPU ticks of the server process."""
        out = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        out["cpu_ticks"] = int(fields[11]) + int(fields[12])  # utime + stime
        return out

    def reset_peak(self) -> int:
        """Reset the process's peak RSS (``clear_refs`` 5) and return its RSS in MB, so that an
        earlier peak cannot hide this one."""
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")
        return self.status()["VmRSS"] // 1024

    def peak_growth_mb(self, before_mb: int) -> float:
        return self.status()["VmHWM"] / 1024 - before_mb

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def nrrd_header(fields: dict[str, str]) -> bytes:
    return ("NRRD0004\n" + "".join(f"{k}: {v}\n" for k, v in fields.items()) + "\n").encode()


def detached_nrrd(data_file: str, *, sizes: str = "1 1 1", skip: int = 0, key="data file"):
    return nrrd_header(
        {
            "type": "uint16",
            "dimension": "3",
            "sizes": sizes,
            "encoding": "raw",
            "endian": "little",
            "byte skip": str(skip),
            key: data_file,
        }
    )


def nifti_header_bytes(shape: tuple[int, ...], dtype) -> bytes:
    """The 352 bytes (header + extension flag) of a NIfTI-1 file of ``shape`` and ``dtype``."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header["vox_offset"] = 352
    header.set_qform(np.eye(4), code=1)
    header.set_sform(np.eye(4), code=1)
    return header.binaryblock + struct.pack("<4x")


def gzip_bomb(path: Path, shape=(1024, 1024, 512)) -> Path:
    """A ``.nii.gz`` that really inflates to the whole float32 volume (2 GiB for the default
    shape) but is about 2 MB on disk: zeros compress 1000:1."""
    head = nifti_header_bytes(shape, np.float32)
    total = int(np.prod(shape)) * 4
    comp = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # a gzip stream
    block = bytes(64 << 20)
    with open(path, "wb") as fh:
        fh.write(comp.compress(head))
        for start in range(0, total, len(block)):
            fh.write(comp.compress(block[: min(len(block), total - start)]))
        fh.write(comp.flush())
    return path


def small_nifti(shape=(20, 20, 20), dtype=np.float32, *, seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    array = rng.normal(100, 20, shape).astype(dtype)
    img = nib.Nifti1Image(array, np.eye(4))
    img.header.set_qform(np.eye(4), code=1)
    img.header.set_sform(np.eye(4), code=1)
    return gzip.compress(img.to_bytes(), compresslevel=1)


def complex_nifti(shape=(20, 20, 20)) -> bytes:
    array = (np.arange(np.prod(shape)).reshape(shape) * (1 + 1j)).astype(np.complex128)
    return gzip.compress(nib.Nifti1Image(array, np.eye(4)).to_bytes())


def form(fields: list[tuple[str, str | None, bytes]]) -> tuple[dict, bytes]:
    """Headers and body of a multipart upload, as MONAI Label's client sends one."""
    from medmoe.serve.monailabel.multipart import encode_form

    ctype, body = encode_form(
        [(n, f, "application/octet-stream" if f else "application/json", d) for n, f, d in fields]
    )
    return {"content-type": ctype}, body
