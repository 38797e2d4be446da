"""Device selection shared by every subcommand: ``--device auto|cpu|cuda|cuda:N``."""

from __future__ import annotations

import argparse
import os
import re

import torch

from medmoe.errors import InputError

DEVICE_HELP = "where to compute: auto (CUDA when available), cpu, cuda or cuda:N (default auto)"
_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """The torch device for ``spec``; refuses an unknown spelling or a CUDA device that is absent."""
    if isinstance(spec, torch.device):
        return spec
    spec = (spec or "auto").strip().lower()
    if not _PATTERN.match(spec):
        raise InputError(f"--device must be auto, cpu, cuda or cuda:N, got {spec!r}")
    if spec == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        spec = "cuda"
    dev = torch.device(spec)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(
                f"--device {spec}: no CUDA device is available (torch {torch.__version__})"
            )
        index = 0 if dev.index is None else dev.index
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            # under torchrun every process takes the GPU of its LOCAL_RANK, whenever the device
            # is resolved (before the process group exists too): never all of them cuda:0
            index = int(os.environ.get("LOCAL_RANK", "0"))
        elif dev.index is None:
            index = torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise InputError(
                f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) here"
            )
        dev = torch.device("cuda", index)
    return dev


def _device_arg(value: str) -> str:
    if not _PATTERN.match(value.strip().lower()):
        raise argparse.ArgumentTypeError(f"must be auto, cpu, cuda or cuda:N, got {value!r}")
    return value.strip().lower()


def add_device_arg(parser: argparse.ArgumentParser) -> None:
    """The one ``--device`` option every computing subcommand takes."""
    parser.add_argument("--device", type=_device_arg, default="auto", help=DEVICE_HELP)
