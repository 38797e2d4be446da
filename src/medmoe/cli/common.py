"""Helpers shared by subcommands: loading a predictor from ``--checkpoint`` or ``--moe``."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_model_args(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--checkpoint", type=Path, help="SAM-Med3D checkpoint (published format)")
    group.add_argument("--moe", type=Path, help="a SAM-Med3D-MoE bundle directory")


def load_predictor(args: argparse.Namespace):
    """A :class:`Sam3DPredictor` for ``--checkpoint`` or a :class:`MoEPredictor` for ``--moe``."""
    if getattr(args, "moe", None) is not None:
        from medmoe.moe import MoEPredictor, load_moe_bundle

        return MoEPredictor(load_moe_bundle(args.moe))
    from medmoe.sam3d import Sam3DPredictor, load_sam3d

    return Sam3DPredictor(load_sam3d(args.checkpoint))
