"""``medmoe segment``: one scan and prompts in patient space -> a mask aligned with the scan."""

from __future__ import annotations

import argparse
from pathlib import Path

from medmoe.cli.common import add_model_args, load_predictor, positive_int
from medmoe.utils.device import add_device_arg


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "segment",
        help="segment one scan from point/box prompts and write the mask in the scan's space",
        description="Points and boxes are voxel indices of the input image (i,j,k), or world "
        "millimetres (RAS, scanner coordinates) with --world.",
    )
    p.add_argument("--image", type=Path, required=True, help=".nii/.nii.gz (or .nrrd/.mha/.mhd)")
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
    p.add_argument("--out", type=Path, required=True, help="output mask (.nii or .nii.gz)")
    p.add_argument(
        "--full-volume",
        action="store_true",
        help="add overlapping windows until the object is covered",
    )
    p.add_argument("--max-windows", type=positive_int, default=32)
    add_device_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from medmoe.data import Sam3DCrop, load_volume, save_volume, world_to_voxel
    from medmoe.data.prompts import check_box, check_points, parse_box, parse_point
    from medmoe.errors import InputError

    if not str(args.out).endswith((".nii", ".nii.gz")):
        raise InputError(f"--out {args.out}: must end in .nii or .nii.gz")
    if not args.point and not args.box:
        raise InputError("give at least one --point or a --box")
    vol = load_volume(args.image)
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
            who = pred.expert_name if pred.used_expert else "general"
            info += f", expert: {who} (s_top {pred.s_top:.3f})"
    save_volume(args.out, mask.astype(np.uint8), vol.affine)
    print(f"wrote {args.out}: {int(mask.sum())} voxels, {info}")
    return 0
