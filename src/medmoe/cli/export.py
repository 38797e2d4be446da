"""``medmoe export onnx``: write SAM-Med3D (or a SAM-Med3D-MoE bundle) as ONNX graphs."""

from __future__ import annotations

import argparse
from pathlib import Path

from medmoe.cli.common import add_model_args, load_predictor
from medmoe.utils.device import add_device_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export the model to other runtimes (ONNX)")
    formats = p.add_subparsers(dest="format", metavar="FORMAT")
    formats.required = True
    o = formats.add_parser(
        "onnx",
        help="image encoder, prompt encoder + mask decoder (and a bundle's gate and experts)",
        description="Writes image_encoder.onnx, prompt_decoder.onnx (any number of point/box "
        "tokens), for a MoE bundle gate.onnx and experts/<name>.onnx, and manifest.json. Then "
        "runs onnxruntime once on a random volume and prints its largest relative difference "
        "from torch. Needs: pip install 'medmoe[onnx]'.",
    )
    add_model_args(o)
    o.add_argument("--out", type=Path, required=True, help="output folder")
    o.add_argument(
        "--quantize",
        choices=["int8"],
        help="also write image_encoder.int8.onnx (dynamic int8 weights; float32 stays the default)",
    )
    o.add_argument("--no-verify", action="store_true", help="skip the onnxruntime check")
    add_device_arg(o)
    o.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from medmoe.errors import InputError
    from medmoe.export.exporter import export_onnx, require_onnx

    require_onnx()
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out {args.out} exists and is not a directory")
    predictor = load_predictor(args)
    moe = getattr(predictor, "moe", None)
    manifest = export_onnx(args.out, model=predictor.model, moe=moe, quantize=args.quantize)
    for name in manifest["files"]:
        size = (args.out / name).stat().st_size / 2**20
        print(f"wrote {args.out / name} ({size:.1f} MB)")
    print(f"wrote {args.out / 'manifest.json'}")
    if not args.no_verify:
        from medmoe.export.verify import verify_export

        for what, rel in verify_export(args.out, model=predictor.model, moe=moe).items():
            print(f"onnxruntime vs torch, {what}: max relative difference {rel:.1e}")
    return 0
