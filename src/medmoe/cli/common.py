"""Helpers shared by subcommands: loading a predictor from ``--checkpoint`` or ``--moe``."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_model_args(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--checkpoint", type=Path, help="SAM-Med3D checkpoint (published format)")
    group.add_argument("--moe", type=Path, help="a SAM-Med3D-MoE bundle directory")


def load_predictor(args: argparse.Namespace):
    """A :class:`Sam3DPredictor` for ``--checkpoint`` or a :class:`MoEPredictor` for ``--moe``,
    with the model on ``--device`` (``auto`` when the subcommand has no such option)."""
    from medmoe.utils.device import resolve_device

    device = resolve_device(getattr(args, "device", "auto"))
    if getattr(args, "moe", None) is not None:
        from medmoe.moe import MoEPredictor, load_moe_bundle

        return MoEPredictor(load_moe_bundle(args.moe).to(device))
    from medmoe.sam3d import Sam3DPredictor, load_sam3d

    return Sam3DPredictor(load_sam3d(args.checkpoint).to(device))


def _ranged(kind, *, low=None, high=None, low_open=False, high_open=False, what=""):
    """An argparse ``type`` that parses ``kind`` and checks it lies in the range (exit 2, one line)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value != value or (low is not None and (value < low or (low_open and value == low))):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        if high is not None and (value > high or (high_open and value == high)):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = what.replace(" ", "_")  # argparse names the type in its messages
    return parse


positive_int = _ranged(int, low=1, what="an integer >= 1")
nonneg_int = _ranged(int, low=0, what="an integer >= 0")
positive_float = _ranged(float, low=0.0, low_open=True, high=float("inf"), what="a number > 0")
nonneg_float = _ranged(float, low=0.0, high=float("inf"), what="a number >= 0")
unit_float = _ranged(float, low=0.0, high=1.0, what="a number in [0, 1]")
tau_value = _ranged(float, low=0.0, high=1.0, high_open=True, what="a number in [0, 1)")


def load_base_for_training(args: argparse.Namespace):
    """``--base`` on ``--device`` (frozen, eval), its SHA-256, and the embedding cache under
    ``--cache`` (default ``OUT/cache``): what expert and gate training both start from."""
    from medmoe.moe import EmbeddingCache
    from medmoe.sam3d import load_sam3d
    from medmoe.utils import file_sha256, seed_everything
    from medmoe.utils.device import resolve_device

    device = resolve_device(args.device)
    seed_everything(args.seed)
    base = load_sam3d(args.base).to(device).eval()
    from medmoe.sam3d.pretrained import resolve_checkpoint

    sha = file_sha256(resolve_checkpoint(args.base))
    root = args.cache or args.out / "cache"
    return base, sha, EmbeddingCache(root=root, base_sha256=sha, encoder=base.image_encoder)
