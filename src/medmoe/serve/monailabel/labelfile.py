"""Label files: those ``/infer`` sends back, NIfTI (``.nii.gz``, ``.nii``) or NRRD, as MONAI
Label's ``result_extension``, ``result_dtype`` and ``result_compress`` params ask; and those
clients save, read back as label maps on their image's grid (to become a DICOM SEG)."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from medmoe.data import Volume
from medmoe.data.headers import check_memory, inspect_upload
from medmoe.data.io import load_label, nifti_bytes
from medmoe.errors import InputError

RESULT_EXTS = {".nii.gz": "application/gzip", ".nii": "application/octet-stream"}
RESULT_EXTS[".nrrd"] = "application/octet-stream"
DTYPES = {"uint8": "uint8", "int16": "int16", "uint16": "uint16", "int32": "int32"}
DTYPES["float32"] = "float"  # numpy name -> NRRD type name


def nrrd_bytes(array: np.ndarray, affine: np.ndarray, *, compress: bool = True) -> bytes:
    """``array`` (indexed ``[i, j, k]``) with a RAS ``affine`` as an NRRD file in LPS space, as
    3D Slicer and ITK write it; gzip-encoded, or raw with ``compress=False``."""
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(affine, dtype=np.float64)
    vec = lambda v: "(" + ",".join(repr(float(x) + 0.0) for x in v) + ")"  # noqa: E731 (no -0.0)
    head = [
        "NRRD0004",
        "# written by medmoe serve",
        f"type: {DTYPES[array.dtype.name]}",
        "dimension: 3",
        "space: left-posterior-superior",
        "sizes: " + " ".join(str(n) for n in array.shape),
        "space directions: " + " ".join(vec(lps[:3, a]) for a in range(3)),
        "kinds: domain domain domain",
        "endian: little",
        f"encoding: {'gzip' if compress else 'raw'}",
        "space origin: " + vec(lps[:3, 3]),
    ]
    data = np.asarray(array, dtype=array.dtype.newbyteorder("<")).ravel(order="F").tobytes()
    data = _gzip(data) if compress else data
    return ("\n".join(head) + "\n\n").encode("ascii") + data


def label_bytes(
    mask: np.ndarray, affine: np.ndarray, *, ext: str, dtype: str, compress: bool = True
) -> bytes:
    array = mask.astype(dtype, copy=False)
    if ext == ".nrrd":
        return nrrd_bytes(array, affine, compress=compress)
    raw = nifti_bytes(array, affine, gz=False)
    return _gzip(raw) if ext == ".nii.gz" else raw


def _gzip(data: bytes) -> bytes:
    """A gzip file of ``data``, deflated run-length only (``Z_RLE``): label maps are long runs
    of equal values, which it finds as fast as level 1 and stores in ~30 % fewer bytes."""
    deflate = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS, 9, zlib.Z_RLE)
    return deflate.compress(data) + deflate.flush()


def result_format(params: dict) -> tuple[str, str, bool]:
    """``(extension, dtype, compress)`` of the label reply, from the request's params."""
    ext = str(params.get("result_extension") or ".nii.gz")
    ext = ext if ext.startswith(".") else "." + ext
    dtype = str(params.get("result_dtype") or "uint8")
    if ext not in RESULT_EXTS or dtype not in DTYPES:
        raise InputError(
            f"result_extension must be one of {sorted(RESULT_EXTS)} and result_dtype one "
            f"of {sorted(DTYPES)}, got {ext!r}, {dtype!r}"
        )
    return ext, dtype, params.get("result_compress", True) is not False  # OHIF: raw NRRD


def read_label(path: Path, ext: str, *, volume: Volume, shown: str, limit: int) -> np.ndarray:
    """A label file (stored or uploaded, so untrusted: its header is checked first) as a uint8
    label map on ``volume``'s grid; another grid, or a 4-D ``.seg.nrrd``, is refused."""
    try:
        info = inspect_upload(path, ".nrrd" if ext.endswith(".nrrd") else ext)
        check_memory(info, limit=limit, source=str(path))
        label = load_label(path, max_bytes=limit)
    except InputError as err:
        raise type(err)(str(err).replace(str(path), shown)) from None
    shape = volume.array.shape
    if label.array.shape != shape or not np.allclose(label.affine, volume.affine, atol=1e-3):
        raise InputError(
            f"{shown}: the label (shape {label.array.shape}) is not on the image's grid "
            f"(shape {shape}, with its affine)"
        )
    if label.array.max() > 255:
        raise InputError(f"{shown}: label values go up to {label.array.max()}, over 255")
    return label.array.astype(np.uint8)


def segment_names(label: np.ndarray, params: dict) -> dict[int, str]:
    """Each label value's segment name: from ``params["label_names"]`` (``{name: value}``, as
    ``/infer`` answers) or ``params["label_info"]`` (``[{"name", "idx"}]``, as Slicer's Submit
    label sends) where given, else ``segment N``."""
    given = params.get("label_names") if isinstance(params.get("label_names"), dict) else {}
    by_value = {v: str(k)[:64] for k, v in given.items() if isinstance(v, int)}
    info = params.get("label_info") if isinstance(params.get("label_info"), list) else []
    for item in info:
        if isinstance(item, dict) and isinstance(item.get("idx"), int) and item.get("name"):
            by_value.setdefault(item["idx"], str(item["name"])[:64])
    values = [int(v) for v in np.unique(label) if v > 0]
    return {v: by_value.get(v, f"segment {v}") for v in values} or {1: "segment"}
