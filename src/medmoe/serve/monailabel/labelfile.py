"""The label files ``/infer`` sends back: NIfTI (``.nii.gz``, ``.nii``) or NRRD, as MONAI Label's
``result_extension``, ``result_dtype`` and ``result_compress`` params ask."""

from __future__ import annotations

import gzip

import numpy as np

from medmoe.data.io import nifti_bytes
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
    data = gzip.compress(data, compresslevel=1) if compress else data
    return ("\n".join(head) + "\n\n").encode("ascii") + data


def label_bytes(
    mask: np.ndarray, affine: np.ndarray, *, ext: str, dtype: str, compress: bool = True
) -> bytes:
    array = mask.astype(dtype)
    if ext == ".nrrd":
        return nrrd_bytes(array, affine, compress=compress)
    raw = nifti_bytes(array, affine, gz=False)
    return gzip.compress(raw, compresslevel=1) if ext == ".nii.gz" else raw  # level 1: fast


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
