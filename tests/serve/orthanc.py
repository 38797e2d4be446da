"""A real Orthanc with its DICOMweb plugin for the tests: Debian's ``orthanc`` and
``orthanc-dicomweb``, installed with apt-get when missing (the tests skip, saying why, only
where apt-get is absent, not root's, too slow or failing), started on a free loopback port
with a temporary configuration and storage, and stopped after. Tested with Debian 12's
orthanc 1.10.1 and orthanc-dicomweb 1.7."""

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
APT_TIMEOUT_S = 600


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _apt_get(args: list[str], env: dict) -> subprocess.CompletedProcess | None:
    """``apt-get ARGS``; ``None`` when it ran past ``APT_TIMEOUT_S``."""
    try:
        return subprocess.run(
            ["apt-get", *args], capture_output=True, text=True, env=env, timeout=APT_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        return None


def find_or_install_orthanc() -> str:
    """The ``Orthanc`` binary, with its DICOMweb plugin; installed by apt-get when missing.
    Where apt-get is absent, not ours to run (not root), too slow or failing (no registry),
    the test is skipped with the reason: the rest of the suite needs no Orthanc."""
    found = shutil.which("Orthanc")
    if found and PLUGIN.is_file():
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.skip("no Orthanc with its DICOMweb plugin, and apt-get is unavailable (or not root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["install", "-y", "-q", "--no-install-recommends", *PACKAGES]
    done = _apt_get(install, env)
    if done is not None and done.returncode != 0:  # a fresh machine may have no package lists
        _apt_get(["update", "-q"], env)
        done = _apt_get(install, env)
    found = shutil.which("Orthanc")
    if done is None:
        pytest.skip(f"apt-get install {' '.join(PACKAGES)} ran past {APT_TIMEOUT_S} s")
    if not (found and PLUGIN.is_file()):
        tail = " ".join((done.stderr or done.stdout).split())[-300:]
        pytest.skip(f"apt-get could not install {' '.join(PACKAGES)}: {tail}")
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
