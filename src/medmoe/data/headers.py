"""Header-only inspection of scans, for uploads that must not be trusted.

:func:`inspect_upload` reads the NIfTI or NRRD header of an uploaded file, never its voxels, so
the shape and voxel type can be checked against a memory cap before anything is decompressed. A
header that names a second file (NRRD ``data file``, the NIfTI pair magics) is refused: an upload
must be one self-contained file. For local command-line files, :func:`check_local_data_file` lets
a detached header (``.nhdr``, ``.mhd``) name a regular file in its own folder, and nothing else.
Error messages quote numbers from the header (sizes, dimensions, codes), never its strings.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import DTypeLike

from medmoe.errors import InputError

UPLOAD_EXTS = (".nii", ".nii.gz", ".nrrd")
NIFTI_HEAD_BYTES = 540  # a NIfTI-2 header; NIfTI-1 needs the first 348
TEXT_HEADER_CAP = 64 << 10  # NRRD and MetaImage text headers are a few hundred bytes in practice
GZIP_READ_CAP = 1 << 20  # compressed bytes read looking for the header before giving up
_CHUNK = 64

NIFTI_DTYPES = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2"}
NIFTI_DTYPES.update({768: "u4", 1024: "i8", 1280: "u8"})
NIFTI_COMPLEX = (32, 1792, 2048)
NIFTI_COLOUR = (128, 2304)
_NRRD_TYPE_NAMES = {
    "i1": "signed char, int8, int8_t",
    "u1": "uchar, unsigned char, uint8, uint8_t",
    "i2": "short, short int, signed short, signed short int, int16, int16_t",
    "u2": "ushort, unsigned short, unsigned short int, uint16, uint16_t",
    "i4": "int, signed int, int32, int32_t",
    "u4": "uint, unsigned int, uint32, uint32_t",
    "i8": "longlong, long long, long long int, signed long long, signed long long int, int64, int64_t",
    "u8": "ulonglong, unsigned long long, unsigned long long int, uint64, uint64_t",
    "f4": "float",
    "f8": "double",
}
NRRD_TYPES = {n: code for code, names in _NRRD_TYPE_NAMES.items() for n in names.split(", ")}
NRRD_ENCODINGS = ("raw", "gzip", "gz", "ascii", "text", "txt", "hex")
NRRD_SPATIAL_KINDS = ("domain", "space", "time", "none", "???")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # teem and MetaIO end a line at any of these


class DetachedData(InputError):
    """A header names a second file to read the voxels from."""


class VolumeTooLarge(InputError):
    """A volume's shape and voxel type need more memory than the cap allows."""


class UnsupportedVoxelType(InputError):
    """Complex, colour, vector (multi-component) or unknown voxel types."""


@dataclass(frozen=True)
class HeaderInfo:
    """What a header says about a volume: its format, 3-D shape and stored voxel type.

    ``dtype`` is in native byte order (the value type, whatever the file's endianness) and is the
    stored type: NIfTI scaling (``scl_slope``) is not applied.
    """

    format: str
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def data_bytes(self) -> int:
        """The decompressed voxel payload, in bytes."""
        return _prod(self.shape) * self.dtype.itemsize

    @property
    def memory_bytes(self) -> int:
        """The least memory loading the volume as float32 (or wider) needs, in bytes."""
        return volume_memory_bytes(self.shape, self.dtype)


def _prod(shape: Sequence[int]) -> int:
    out = 1
    for s in shape:
        out *= int(s)
    return out


def volume_memory_bytes(shape: Sequence[int], dtype: DTypeLike) -> int:
    """``prod(shape) * max(itemsize, 4)``: the voxels as float32, or as ``dtype`` if wider."""
    return _prod(shape) * max(np.dtype(dtype).itemsize, 4)


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f}" if n >= 10 << 20 else f"{n / 2**20:.3g}"


def check_memory(
    info: HeaderInfo | Sequence[int],
    dtype: DTypeLike | None = None,
    *,
    limit: int,
    source: str,
    what: str = "--max-volume-mb",
) -> None:
    """Raise :class:`VolumeTooLarge` if the volume needs more than ``limit`` bytes of memory.

    ``info`` is a :class:`HeaderInfo`, or a shape given with its ``dtype`` (float32 by default).
    The message names the limit in MiB and ``what`` sets it.
    """
    if isinstance(info, HeaderInfo):
        shape, dt = info.shape, info.dtype
    else:
        shape, dt = tuple(int(s) for s in info), np.dtype(np.float32 if dtype is None else dtype)
    need = volume_memory_bytes(shape, dt)
    if need > limit:
        raise VolumeTooLarge(
            f"{source}: shape {shape} of {dt.name} needs {_mib(need)} MiB "
            f"({need / 2**30:.1f} GiB) in memory, more than the {_mib(limit)} MiB allowed "
            f"(set {what} to change)"
        )


def _read_nifti_head(path: Path, gz: bool) -> bytes:
    """The first :data:`NIFTI_HEAD_BYTES` bytes of the (decompressed) file, or fewer if it ends."""
    with open(path, "rb") as f:
        if not gz:
            return f.read(NIFTI_HEAD_BYTES)
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out, read = b"", 0
        try:
            while len(out) < NIFTI_HEAD_BYTES and not d.eof:
                buf = d.unconsumed_tail
                if not buf:
                    if read >= GZIP_READ_CAP:
                        break
                    buf = f.read(_CHUNK)
                    read += len(buf)
                    if not buf:
                        break
                out += d.decompress(buf, NIFTI_HEAD_BYTES - len(out))
        except zlib.error:
            raise InputError(f"cannot read {path}: not a valid gzip stream") from None
        return out


def _nifti_dtype(code: int, source: str) -> np.dtype:
    if code in NIFTI_COMPLEX:
        raise UnsupportedVoxelType(f"{source}: complex voxels are refused (datatype {code})")
    if code in NIFTI_COLOUR:
        raise UnsupportedVoxelType(f"{source}: RGB/RGBA voxels are refused (datatype {code})")
    if code not in NIFTI_DTYPES:
        raise UnsupportedVoxelType(f"{source}: unsupported NIfTI datatype code {code}")
    return np.dtype(NIFTI_DTYPES[code])


def _spatial_shape(dims: Sequence[int], source: str) -> tuple[int, ...]:
    """``dims`` with a trailing singleton 4th axis dropped; refuse anything but 3 positive sizes."""
    dims = tuple(int(d) for d in dims)
    if len(dims) == 4 and dims[3] == 1:
        dims = dims[:3]
    if len(dims) != 3:
        raise InputError(f"{source}: expected a 3-D volume, got {len(dims)} dimensions")
    if min(dims) <= 0:
        raise InputError(f"{source}: shape {dims} has an axis of size 0 or less")
    return dims


def parse_nifti_header(buf: bytes, source: str) -> HeaderInfo:
    """Shape and stored type from the bytes of a single-file NIfTI-1 or NIfTI-2 header."""
    if len(buf) < 348:
        raise InputError(f"cannot read {source}: too short for a NIfTI header")
    for end in "<>":
        size = struct.unpack(end + "i", buf[:4])[0]
        if size in (348, 540):
            break
    else:
        raise InputError(f"cannot read {source}: not a NIfTI file (bad sizeof_hdr)")
    if size == 348:
        magic, ndim_at, dims_fmt, code_at = buf[344:348], 40, "8h", 70
    elif len(buf) < 540:
        raise InputError(f"cannot read {source}: too short for a NIfTI-2 header")
    else:
        magic, ndim_at, dims_fmt, code_at = buf[4:8], 16, "8q", 12
    version = "1" if size == 348 else "2"
    if magic == b"ni" + version.encode() + b"\0":
        raise DetachedData(f"{source}: a NIfTI header/image pair (.hdr/.img) is refused")
    if magic != b"n+" + version.encode() + b"\0":
        raise InputError(f"cannot read {source}: not a single-file NIfTI-{version} (bad magic)")
    dims = struct.unpack_from(end + dims_fmt, buf, ndim_at)
    code = struct.unpack_from(end + "h", buf, code_at)[0]
    if not 1 <= dims[0] <= 7:
        raise InputError(f"{source}: bad NIfTI dim[0] {dims[0]}")
    shape = _spatial_shape(dims[1 : 1 + dims[0]], source)
    return HeaderInfo("nifti", shape, _nifti_dtype(code, source))


def read_nrrd_fields(path: Path, *, attached: bool = True) -> dict[str, str]:
    """The fields of a NRRD header: names lower-cased with whitespace collapsed (``datafile`` is
    stored as ``data file``), values stripped; comments and ``key:=value`` pairs are skipped.

    The header ends at the first empty line; ``attached=False`` (a detached ``.nhdr``) also lets
    it end with the file. Refused: no ``NRRD000`` magic, over 64 KiB, a field given twice.
    """
    with open(path, "rb") as f:
        raw = f.read(TEXT_HEADER_CAP + 1)
    lines = _LINE_BREAK.split(raw[:TEXT_HEADER_CAP].decode("latin-1"))
    if not lines[0].startswith("NRRD000"):
        raise InputError(f"cannot read {path}: not a NRRD file (no NRRD000 magic)")
    fields: dict[str, str] = {}
    for i, line in enumerate(lines[1:], start=1):
        if line == "" and i < len(lines) - 1:
            return fields
        key = line.split(":", 1)[0].strip().lower()
        if re.sub(r"\s+", "", key) == "datafile":
            key = "data file"  # caught whatever else the line holds, ':=' included
        elif line.startswith("#") or ":=" in line or ":" not in line:
            continue
        key = " ".join(key.split())
        if key in fields:
            raise InputError(f"{path}: NRRD field {key!r} is given twice")
        fields[key] = line.split(":", 1)[1].strip()
    if len(raw) > TEXT_HEADER_CAP:
        raise InputError(f"{path}: the NRRD header is longer than 64 KiB or has no end")
    if attached and "data file" not in fields:
        raise InputError(f"{path}: the NRRD header has no empty line ending it (no data)")
    return fields


def _nrrd_info(fields: dict[str, str], source: str) -> HeaderInfo:
    """Shape and type of a 3-D scalar NRRD from its fields (``data file`` already handled)."""
    dim = fields.get("dimension", "")
    if dim != "3":
        shown = f"dimension {dim}" if re.fullmatch(r"[0-9]{1,3}", dim) else "no valid dimension"
        raise InputError(f"{source}: expected a 3-D volume, the NRRD header has {shown}")
    sizes = fields.get("sizes", "").split()
    if len(sizes) != 3 or not all(re.fullmatch(r"[0-9]{1,18}", s) for s in sizes):
        raise InputError(f"{source}: the NRRD sizes field is not 3 non-negative integers")
    shape = _spatial_shape([int(s) for s in sizes], source)
    kinds = fields.get("kinds", "").lower().split()
    if any(k not in NRRD_SPATIAL_KINDS for k in kinds):
        raise UnsupportedVoxelType(f"{source}: non-spatial axis kinds (vector, colour, complex...)")
    name = " ".join(fields.get("type", "").lower().split())
    if name not in NRRD_TYPES:
        raise UnsupportedVoxelType(f"{source}: unsupported or missing NRRD voxel type")
    if fields.get("encoding", "").lower() not in NRRD_ENCODINGS:
        raise InputError(f"{source}: unsupported or missing NRRD encoding")
    return HeaderInfo("nrrd", shape, np.dtype(NRRD_TYPES[name]))


def read_mhd_data_file(path: Path) -> str:
    """The ``ElementDataFile`` value of a MetaImage header (``.mha``/``.mhd``), stripped.

    MetaIO ends the header at that field; it must come within the first 64 KiB.
    """
    with open(path, "rb") as f:
        raw = f.read(TEXT_HEADER_CAP)
    for line in _LINE_BREAK.split(raw.decode("latin-1")):
        m = re.match(r"([^=:]*)[=:](.*)", line, re.S)
        if m and re.sub(r"\s+", "", m.group(1)).lower() == "elementdatafile":
            return m.group(2).strip()
    raise InputError(f"{path}: no ElementDataFile field in the first 64 KiB of the header")


def check_local_data_file(header: Path, value: str) -> None:
    """Allow a detached data file only if it is one regular file inside the header's folder.

    ``value`` is the header's NRRD ``data file`` or MetaImage ``ElementDataFile``. Refused with
    :class:`DetachedData`: file lists (``LIST``), numbered patterns, whitespace-separated forms,
    anything resolving (symlinks followed) outside the folder, and non-regular files.
    """
    refused = DetachedData(
        f"{header}: the header's data file must be a regular file in the header's own folder"
    )
    if not value or value.upper().startswith("LIST") or "%" in value or len(value.split()) != 1:
        raise refused
    try:
        folder = header.absolute().parent.resolve()
        target = (header.absolute().parent / value).resolve()  # an absolute value replaces it
    except (OSError, RuntimeError):
        raise refused from None
    if not target.is_relative_to(folder) or not target.is_file():
        raise refused


def inspect_upload(path: Path, ext: str) -> HeaderInfo:
    """Shape and voxel type of an untrusted upload, from its header alone.

    ``ext`` is the upload's extension: ``.nii``, ``.nii.gz`` or ``.nrrd``. The voxels are never
    read (a ``.nii.gz`` is decompressed only as far as the header). Raises :class:`DetachedData`,
    :class:`UnsupportedVoxelType` or :class:`InputError`; the caller applies :func:`check_memory`.
    """
    path = Path(path)
    ext = ext.lower()
    if ext not in UPLOAD_EXTS:
        raise InputError(f"{path}: only single-file {', '.join(UPLOAD_EXTS)} uploads are accepted")
    if ext == ".nrrd":
        fields = read_nrrd_fields(path, attached=True)
        if "data file" in fields:
            raise DetachedData(f"{path}: a NRRD header naming a separate data file is refused")
        return _nrrd_info(fields, str(path))
    return parse_nifti_header(_read_nifti_head(path, gz=ext == ".nii.gz"), str(path))
