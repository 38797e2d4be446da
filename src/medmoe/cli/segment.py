"""``medmoe segment``: one scan and prompts in patient space -> a mask aligned with the scan."""

from __future__ import annotations

import argparse
from pathlib import Path

from medmoe.cli.common import add_model_args, load_predictor, positive_int
from medmoe.utils.device import add_device_arg

FORMATS = ("nifti", "dicom-seg")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "segment",
        help="segment one scan from point/box prompts and write the mask in the scan's space",
        description="Points and boxes are voxel indices of the input image (i,j,k), or world "
        "millimetres (RAS, scanner coordinates) with --world.",
    )
    p.add_argument(
        "--image",
        type=Path,
        required=True,
        help=".nii/.nii.gz (or .nrrd/.mha/.mhd), or a DICOM series: a folder, a .zip or one .dcm",
    )
    p.add_argument(
        "--series", metavar="UID", help="the SeriesInstanceUID to read when --image holds several"
    )
    p.add_argument(
        "--point",
        action="append",
        default=[],
        metavar="X,Y,Z[,LABEL]",
        help="a click; LABEL 1 positive (default) or 0 negative; repeat for more",
    )
    p.add_argument("--box", metavar="X1,Y1,Z1,X2,Y2,Z2", help="a box prompt")
    p.add_argument("--world", action="store_true", help="prompts are in world mm, not voxels")
    add_model_args(p)
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output mask: .nii/.nii.gz, or .dcm for a DICOM SEG of the input series",
    )
    p.add_argument(
        "--format",
        choices=FORMATS,
        help="the output's format (default: from --out's suffix)",
    )
    p.add_argument(
        "--segment-label",
        metavar="NAME",
        help="the DICOM SEG segment's name (default: the expert's name, or 'segment')",
    )
    p.add_argument(
        "--full-volume",
        action="store_true",
        help="add overlapping windows until the object is covered",
    )
    p.add_argument(
        "--max-windows", type=positive_int, default=32,
        help="with --full-volume: the most windows to add (32)",
    )  # fmt: skip
    add_device_arg(p)
    p.set_defaults(func=run)


def output_format(out: Path, chosen: str | None) -> str:
    """``nifti`` or ``dicom-seg``: ``chosen``, checked against ``out``'s suffix, or that suffix's."""
    from medmoe.errors import InputError

    name = str(out).lower()
    by_suffix = (
        "nifti"
        if name.endswith((".nii", ".nii.gz"))
        else "dicom-seg"
        if name.endswith(".dcm")
        else None
    )
    if chosen is None and by_suffix is None:
        raise InputError(f"--out {out}: must end in .nii, .nii.gz or .dcm (or give --format)")
    if chosen == "nifti" and by_suffix != "nifti":
        raise InputError(f"--out {out}: a NIfTI mask must end in .nii or .nii.gz")
    return chosen or by_suffix


def _read_image(args: argparse.Namespace, fmt: str):
    """The scan, and its DICOM series when a SEG is to be written."""
    from medmoe.data import load_volume
    from medmoe.data.dicom import is_dicom_path, read_series
    from medmoe.errors import InputError

    if fmt != "dicom-seg":
        return load_volume(args.image, series=args.series), None
    if not is_dicom_path(args.image):
        raise InputError("a DICOM SEG needs a DICOM series as --image (a folder, .zip or .dcm)")
    series = read_series(args.image, series=args.series)
    return series.volume, series


def _write_mask(args, fmt: str, mask, vol, series, expert: str) -> None:
    import numpy as np

    from medmoe.data import save_volume

    if fmt == "nifti":
        save_volume(args.out, mask.astype(np.uint8), vol.affine)
        return
    from medmoe.data.dicom_seg import Algorithm, write_dicom_seg

    source = args.moe if args.moe is not None else args.checkpoint
    model = Path(str(source)).name.removesuffix(".pth").removesuffix(".safetensors")
    name = args.segment_label or (expert if expert != "general" else "segment")
    write_dicom_seg(
        args.out,
        mask.astype(np.uint8),
        series.headers,
        segments={1: name},
        algorithm=Algorithm(model=model, expert=expert),
    )


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from medmoe.data import Sam3DCrop, world_to_voxel
    from medmoe.data.prompts import check_box, check_points, parse_box, parse_point
    from medmoe.errors import InputError

    fmt = output_format(args.out, args.format)
    if not args.point and not args.box:
        raise InputError("give at least one --point or a --box")
    vol, series = _read_image(args, fmt)
    parsed = [parse_point(t) for t in args.point]
    points = np.array([p for p, _ in parsed]).reshape(-1, 3)
    labels = np.array([lab for _, lab in parsed], dtype=np.int64)
    box = parse_box(args.box) if args.box else None
    if args.world:  # rounded to 1e-6 voxel so that matrix-inversion noise cannot move the crop
        points = np.round(world_to_voxel(points, vol.affine), 6) if len(points) else points
        if box is not None:
            ends = world_to_voxel(box.reshape(2, 3), vol.affine)
            box = np.round(np.concatenate([ends.min(0), ends.max(0)]), 6)
    if len(points):
        check_points(points, vol.array.shape)
    if box is not None:
        box = check_box(box, vol.array.shape)
    predictor = load_predictor(args)
    expert = "general" if args.moe is None else "moe"  # per window, under --full-volume
    if args.full_volume:
        from medmoe.inference import segment_full_volume

        result = segment_full_volume(
            predictor,
            vol,
            points_ijk=points,
            labels=labels,
            box_ijk=box,
            max_windows=args.max_windows,
        )
        mask = result.mask
        info = f"{len(result.windows)} window(s)" + (
            " (hit --max-windows)" if result.hit_limit else ""
        )
    else:
        crop = (
            Sam3DCrop.around_box(vol, box)
            if box is not None
            else Sam3DCrop.around_point(vol, points[0])
        )
        crop_pts = crop.to_crop_coords(points) if len(points) else None
        if crop_pts is not None and not crop.contains(crop_pts).all():
            raise InputError("all points must lie within one 128^3 crop (or use --full-volume)")
        predictor.set_image(crop.image)
        pred = predictor.predict(
            points=crop_pts,
            labels=labels if crop_pts is not None else None,
            box=crop.box_to_crop(box) if box is not None else None,
        )
        mask = crop.invert(pred.mask[0, 0].cpu().numpy())
        info = "1 crop"
        if hasattr(pred, "used_expert"):
            expert = pred.expert_name if pred.used_expert else "general"
            info += f", expert: {expert} (s_top {pred.s_top:.3f})"
    _write_mask(args, fmt, mask, vol, series, expert)
    print(f"wrote {args.out}: {int(mask.sum())} voxels, {info}")
    return 0
