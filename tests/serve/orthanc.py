"""A real Orthanc with its DICOMweb plugin for the tests: Debian's ``orthanc`` and
``orthanc-dicomweb``, installed with apt-get when missing (the test skips only where apt-get
itself is unavailable), started on a free loopback port with a temporary configuration and
storage, and stopped after."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
PACKAGES = ["orthanc", "orthanc-dicomweb"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_or_install_orthanc() -> str:
    found = shutil.which("Orthanc")
    if found and PLUGIN.is_file():
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.skip("no Orthanc with its DICOMweb plugin, and apt-get is unavailable (or not root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    if done.returncode != 0:  # a fresh machine may have no package lists yet
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env, timeout=900)
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    found = shutil.which("Orthanc")
    assert found and PLUGIN.is_file(), f"apt-get could not install Orthanc: {done.stderr[-400:]}"
    return found


class Orthanc:
    """``Orthanc`` on 127.0.0.1 with storage under ``root``; ``dicomweb`` is its DICOMweb root."""

    def __init__(self, root: Path) -> None:
        binary = find_or_install_orthanc()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dicomweb = self.url + "/dicom-web"
        config = {
            "Name": "medmoe-test",
            "StorageDirectory": str(root / "db"),
            "IndexDirectory": str(root / "db"),
            "HttpPort": self.port,
            "DicomServerEnabled": False,
            "DicomPort": free_port(),
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "Plugins": [str(PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        (root / "orthanc.json").write_text(json.dumps(config), encoding="utf-8")
        self.log = root / "orthanc.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [binary, str(root / "orthanc.json")], stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited: {self.log.read_text()[-1500:]}")
            try:
                if httpx.get(self.dicomweb + "/studies", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"Orthanc did not start: {self.log.read_text()[-1500:]}")

    def upload(self, paths: list[Path]) -> None:
        """Store files through Orthanc's own REST API (not medmoe's STOW-RS client)."""
        for path in paths:
            r = httpx.post(self.url + "/instances", content=path.read_bytes(), timeout=30)
            r.raise_for_status()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
