"""The subset of MONAI Label's REST API that 3D Slicer's MONAILabel module and OHIF use.

Formats follow MONAI Label 0.8 (``monailabel/endpoints``): ``params`` is a JSON form field of a
``multipart/form-data`` body; ``/infer`` answers with a multipart body of ``params`` (JSON) and
the label image. The model is of type ``deepgrow``: ``foreground`` and ``background`` are lists
of voxel indices ``[i, j, k]`` of the image as stored (Slicer's IJK), the foreground points
first. The label comes back on the image's own grid with its affine, 1 inside the object, as
NIfTI (``.nii.gz``, default, or ``.nii``) or NRRD (``.nrrd``) as ``result_extension`` asks.

Each call is a pure function of its points, as ``medmoe segment`` with the same points: one
128^3 crop around the first point (or around Slicer's ``roi``, a box prompt), all points at
once; when a point lies outside that crop, the crop around all of them
(:mod:`medmoe.serve.placement`). The crop's embedding is cached per image version and crop
position (:class:`EmbeddingLRU`), so the clicks that follow the first on the same object run
only the prompt encoder, the gate and the decoders.
"""

from __future__ import annotations

import json
import time
import uuid

import numpy as np
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from medmoe.data import Volume
from medmoe.data.prompts import check_box, check_points
from medmoe.errors import InputError
from medmoe.serve.engine import Decoded, EmbeddingLRU, Engine
from medmoe.serve.mapback import invert_mask
from medmoe.serve.monailabel.datastore import Datastore
from medmoe.serve.monailabel.datastore_routes import download
from medmoe.serve.monailabel.labelfile import RESULT_EXTS, label_bytes, result_format
from medmoe.serve.monailabel.multipart import encode_form, form_params
from medmoe.serve.monailabel.temp_images import TempImages
from medmoe.serve.monailabel.uploads import Uploads
from medmoe.serve.placement import crop_geometry, crop_image, place
from medmoe.serve.session import check_point_count, mask_bbox

OBJECT_LABEL = "object"  # the segment Slicer creates for the user to click into


def _roi(value, shape) -> np.ndarray | None:
    """Slicer's ``roi``, ``[i1, i2, j1, j2, k1, k2]`` (each pair in either order: the corners
    come from RAS), as a box ``(i1, j1, k1, i2, j2, k2)`` with ``lo <= hi``."""
    if value is None or value == []:
        return None
    if not isinstance(value, list) or len(value) != 6 or not all(_is_number(v) for v in value):
        raise InputError("roi must be 6 voxel indices [i1, i2, j1, j2, k1, k2]")
    pairs = np.asarray(value, dtype=np.float64).reshape(3, 2)
    return check_box(np.concatenate([pairs.min(1), pairs.max(1)]), shape)


def _is_number(x) -> bool:
    """A JSON number (not a bool) that fits a float64 (jsonlimits already bounds its digits)."""
    return isinstance(x, int | float) and not isinstance(x, bool) and abs(x) < 1e300


def _points(value, what: str) -> list[list[float]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(
        isinstance(p, list) and len(p) == 3 and all(_is_number(x) for x in p) for p in value
    ):
        raise InputError(f"{what} must be a list of [i, j, k] voxel points")
    return value


class Deepgrow:
    """Points in, a label on the image's grid out, through the shared :class:`Engine`."""

    def __init__(self, *, engine: Engine, capacity: int) -> None:
        self.engine = engine
        self.embeddings = EmbeddingLRU(capacity=capacity)

    def __call__(
        self,
        volume: Volume,
        key: str,
        foreground: list,
        background: list,
        box: np.ndarray | None = None,
    ) -> tuple[np.ndarray, Decoded, bool]:
        """``(mask uint8 on the image's grid, decoded, whether the encoder ran)``; ``box`` is
        ``(i1, j1, k1, i2, j2, k2)``: the crop is then centred on it, as ``medmoe segment``'s."""
        if not foreground and not background and box is None:
            raise InputError("give at least one foreground or background point, or a roi")
        if box is not None and not self.engine.supports_boxes:
            raise InputError("this model takes no box prompt (roi)")
        check_point_count(len(foreground) + len(background))
        pts = np.array(foreground + background, dtype=np.float64).reshape(-1, 3)
        if len(pts):
            check_points(pts, volume.array.shape)
        labels = np.array([1] * len(foreground) + [0] * len(background), dtype=np.int64)

        # the crop is a function of the scan and the points (placement.place): cached with them
        centre = place(volume, pts, box, size=self.engine.size)
        crop = crop_geometry(volume, centre, size=self.engine.size)
        features, encoded = self.embeddings.get(
            (key, *centre.tolist()), lambda: self.engine.encode(crop_image(volume, crop))
        )
        crop_pts = crop.to_crop_coords(pts) if len(pts) else None
        decoded = self.engine.decode(
            features,
            points=crop_pts,
            labels=labels if crop_pts is not None else None,
            box=crop.box_to_crop(box) if box is not None else None,
            mask_input=None,
        )
        # Fortran order, as NIfTI and NRRD store voxels: the reply is then written without a
        # transposing copy of the whole grid
        mask = np.zeros(volume.array.shape, dtype=np.uint8, order="F")
        box = mask_bbox(decoded.mask)
        if box is not None:  # only the mask's footprint is mapped back (serve.mapback)
            lo, hi = crop.footprint(box)
            region = invert_mask(crop, decoded.mask, (lo, hi))
            mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = region
        return mask, decoded, encoded


def model_name(engine: Engine) -> str:
    return "medmoe_moe" if engine.is_moe else "medmoe_sam3d"


def infer_routes(
    router: APIRouter, engine: Engine, datastore: Datastore, sessions: TempImages, uploads: Uploads
) -> None:
    deepgrow = Deepgrow(engine=engine, capacity=max(8, 2 * sessions.max_count))
    name = model_name(engine)

    @router.post("/infer/{model}")
    async def infer(
        request: Request, model: str, image: str = "", session_id: str = "", output: str = "all"
    ) -> Response:
        """Deepgrow: ``params`` holds ``foreground`` and ``background`` (IJK voxel points),
        optionally ``roi`` (a box, as Slicer sends it), ``label`` (the segment's name), ``result_extension``, ``result_dtype`` and
        ``result_compress`` (``false``: raw NRRD)."""
        if model != name:
            raise HTTPException(404, f"no model {model!r} (this server has {name!r})")
        async with uploads.form(request, params_only=True) as parts:
            params = form_params(parts)
        return await run_in_threadpool(run, params, image, session_id, output)

    def run(params: dict, image: str, session_id: str, output: str) -> Response:
        start = time.perf_counter()
        ext, dtype, compress = result_format(params)
        if session_id:
            item = sessions.get(session_id)
            volume, key = item.volume, "session:" + item.id
        elif image:
            volume, version = datastore.volume(image)
            key = "image:" + version
        else:
            raise InputError("give an image id or a session_id")
        mask, decoded, encoded = deepgrow(
            volume,
            key,
            _points(params.get("foreground"), "foreground"),
            _points(params.get("background"), "background"),
            _roi(params.get("roi"), volume.array.shape),
        )
        reply = {
            "label_names": {str(params.get("label") or OBJECT_LABEL): 1},
            "model": name,
            "expert": decoded.expert,
            "s_top": decoded.s_top,
            "gate_probs": decoded.gate_probs,
            "iou": decoded.iou,
            "encoded": encoded,
            "voxels": int(np.count_nonzero(mask)),
            "latencies": {"total": round(time.perf_counter() - start, 4)},
        }
        if output == "json":
            return JSONResponse(reply)
        data = label_bytes(mask, volume.affine, ext=ext, dtype=dtype, compress=compress)
        filename = f"medmoe_{uuid.uuid4().hex}{ext}"  # unique: the client saves it by this name
        if output == "image":
            return download(data, filename)
        ctype, body = encode_form(
            [
                ("params", None, "application/json", _json(reply)),
                ("image", filename, RESULT_EXTS[ext], data),
            ]
        )
        return Response(body, media_type=ctype)


def _json(value) -> bytes:
    return json.dumps(value).encode("utf-8")
