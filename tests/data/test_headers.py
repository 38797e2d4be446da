"""Header-only inspection of uploads: hand-built NIfTI and NRRD headers, checked against
hand-computed shapes and sizes; detached data, complex and colour voxels are refused."""

from __future__ import annotations

import gzip
import os
import struct
import time

import nibabel as nib
import numpy as np
import pytest

from medmoe.data.headers import (
    DetachedData,
    HeaderInfo,
    UnsupportedVoxelType,
    VolumeTooLarge,
    check_memory,
    inspect_upload,
    volume_memory_bytes,
)
from medmoe.errors import InputError

BITPIX = {2: 8, 4: 16, 8: 32, 16: 32, 64: 64, 256: 8, 512: 16, 32: 64, 1792: 128, 128: 24}


def nifti1(dims, code, *, end="<", magic=b"n+1\0") -> bytes:
    """A NIfTI-1 header (348 bytes) plus the 4-byte extension flag; ``dims`` is dim[0..]."""
    buf = bytearray(348)
    struct.pack_into(end + "i", buf, 0, 348)
    struct.pack_into(end + "8h", buf, 40, *(list(dims) + [1] * (8 - len(dims))))
    struct.pack_into(end + "hh", buf, 70, code, BITPIX.get(code, 0))
    struct.pack_into(end + "8f", buf, 76, *([1.0] * 8))
    struct.pack_into(end + "ff", buf, 108, 352.0, 1.0)  # vox_offset, scl_slope
    buf[344:348] = magic
    return bytes(buf) + b"\0\0\0\0"


def nifti2(dims, code, *, end="<", magic=b"n+2\0\r\n\x1a\n") -> bytes:
    """A NIfTI-2 header (540 bytes) plus the extension flag."""
    buf = bytearray(540)
    struct.pack_into(end + "i", buf, 0, 540)
    buf[4:12] = magic
    struct.pack_into(end + "hh", buf, 12, code, BITPIX.get(code, 0))
    struct.pack_into(end + "8q", buf, 16, *(list(dims) + [1] * (8 - len(dims))))
    struct.pack_into(end + "8d", buf, 104, *([1.0] * 8))
    struct.pack_into(end + "qdd", buf, 168, 544, 1.0, 0.0)  # vox_offset, scl_slope, scl_inter
    return bytes(buf) + b"\0\0\0\0"


def write(tmp_path, name, payload: bytes):
    path = tmp_path / name
    path.write_bytes(payload)
    return path


@pytest.mark.parametrize("end", ["<", ">"])
def test_nifti1_both_endiannesses(tmp_path, end):
    data = np.arange(4 * 5 * 6, dtype=end + "i2").tobytes()
    path = write(tmp_path, "a.nii", nifti1([3, 4, 5, 6], 4, end=end) + data)
    info = inspect_upload(path, ".nii")
    assert info == HeaderInfo("nifti", (4, 5, 6), np.dtype(np.int16))
    assert info.data_bytes == 240 and info.memory_bytes == 480
    # the hand-built header is one nibabel reads the same way
    img = nib.load(str(path))
    assert img.shape == (4, 5, 6) and img.get_data_dtype().newbyteorder("=") == np.int16


def test_nifti2_and_trailing_singleton_axis(tmp_path):
    path = write(tmp_path, "b.nii", nifti2([4, 7, 8, 9, 1], 64) + bytes(7 * 8 * 9 * 8))
    info = inspect_upload(path, ".nii")
    assert info == HeaderInfo("nifti", (7, 8, 9), np.dtype(np.float64))
    assert info.data_bytes == 7 * 8 * 9 * 8 == info.memory_bytes
    assert nib.load(str(path)).shape == (7, 8, 9, 1)
    big = write(tmp_path, "c.nii", nifti2([3, 2, 3, 4], 512, end=">") + bytes(48))
    assert inspect_upload(big, ".nii") == HeaderInfo("nifti", (2, 3, 4), np.dtype(np.uint16))


def test_nii_gz_reads_only_the_header(tmp_path):
    header = nifti1([3, 1024, 1024, 512], 16)
    path = write(tmp_path, "bomb.nii.gz", gzip.compress(header + bytes(4096)))
    start = time.perf_counter()
    info = inspect_upload(path, ".nii.gz")
    assert time.perf_counter() - start < 0.5
    assert info.shape == (1024, 1024, 512) and info.dtype == np.float32
    assert info.memory_bytes == 2**31 == info.data_bytes
    with pytest.raises(VolumeTooLarge, match=r"more than the 1024 MiB allowed"):
        check_memory(info, limit=2**30, source="bomb.nii.gz")


def test_nii_gz_stream_past_the_header_is_never_decompressed(tmp_path):
    """A stream whose tail is cut off: reading it all fails, reading the header does not."""
    payload = gzip.compress(nifti1([3, 64, 64, 64], 2) + os.urandom(1 << 20))
    path = write(tmp_path, "cut.nii.gz", payload[: len(payload) // 2])
    with pytest.raises(EOFError):
        gzip.decompress(path.read_bytes())
    assert inspect_upload(path, ".nii.gz") == HeaderInfo("nifti", (64, 64, 64), np.dtype("u1"))


@pytest.mark.parametrize("code, dtype", [(32, np.complex64), (1792, np.complex128)])
def test_complex_nifti_refused(tmp_path, code, dtype):
    path = write(tmp_path, "c.nii", nifti1([3, 2, 2, 2], code) + bytes(8 * 16))
    with pytest.raises(UnsupportedVoxelType, match="complex voxels are refused"):
        inspect_upload(path, ".nii")
    assert volume_memory_bytes((10, 10, 10), dtype) == 1000 * np.dtype(dtype).itemsize


@pytest.mark.parametrize("code", [128, 2304, 1536, 0, 1, 999])
def test_colour_float128_and_unknown_nifti_types_refused(tmp_path, code):
    path = write(tmp_path, "c.nii", nifti1([3, 2, 2, 2], code) + bytes(64))
    with pytest.raises(UnsupportedVoxelType):
        inspect_upload(path, ".nii")


def test_nifti_pair_magic_refused(tmp_path):
    one = write(tmp_path, "p.nii", nifti1([3, 2, 2, 2], 2, magic=b"ni1\0"))
    with pytest.raises(DetachedData):
        inspect_upload(one, ".nii")
    two = write(tmp_path, "q.nii", nifti2([3, 2, 2, 2], 2, magic=b"ni2\0\r\n\x1a\n"))
    with pytest.raises(DetachedData):
        inspect_upload(two, ".nii")
    analyze = write(tmp_path, "r.nii", nifti1([3, 2, 2, 2], 2, magic=b"\0\0\0\0"))
    with pytest.raises(InputError, match="bad magic"):
        inspect_upload(analyze, ".nii")


@pytest.mark.parametrize(
    "dims, message",
    [
        ([2, 4, 4], "3-D"),
        ([4, 4, 4, 4, 2], "3-D"),
        ([5, 4, 4, 4, 1, 1], "3-D"),
        ([3, 4, 0, 4], "size 0 or less"),
        ([3, 4, -2, 4], "size 0 or less"),
        ([9, 4, 4, 4], "dim"),
    ],
)
def test_nifti_dims_refused(tmp_path, dims, message):
    path = write(tmp_path, "d.nii", nifti1(dims[:8], 16) + bytes(64))
    with pytest.raises(InputError, match=message):
        inspect_upload(path, ".nii")


def test_not_a_nifti(tmp_path):
    for name, payload in [("x.nii", b"hello" * 100), ("y.nii", b"short")]:
        with pytest.raises(InputError, match="cannot read"):
            inspect_upload(write(tmp_path, name, payload), ".nii")
    with pytest.raises(InputError, match="cannot read"):
        inspect_upload(write(tmp_path, "z.nii.gz", b"\x1f\x8b\x08\0garbage" * 40), ".nii.gz")


@pytest.mark.parametrize("ext", [".nhdr", ".mhd", ".mha", ".hdr", ".img", ".png"])
def test_only_single_file_uploads(tmp_path, ext):
    with pytest.raises(InputError, match="only single-file"):
        inspect_upload(write(tmp_path, "x" + ext, b"NRRD0004\n"), ext)


def nrrd(*fields: str, data: bytes = b"", sep: str = "\n") -> bytes:
    return (sep.join(["NRRD0004", *fields]) + sep + sep).encode("latin-1") + data


BASE = ("type: float", "dimension: 3", "sizes: 2 3 4", "encoding: raw", "endian: little")


def test_nrrd_attached(tmp_path):
    path = write(tmp_path, "a.nrrd", nrrd(*BASE, "# a comment", "Name:=value", data=bytes(96)))
    info = inspect_upload(path, ".nrrd")
    assert info == HeaderInfo("nrrd", (2, 3, 4), np.dtype(np.float32))
    assert info.data_bytes == 96 == info.memory_bytes


def test_nrrd_single_uint16_voxel_with_byte_skip(tmp_path):
    fields = ("TYPE: uint16", "Dimension: 3", "sizes: 1 1 1", "encoding: raw", "byte skip: 3")
    path = write(tmp_path, "b.nrrd", nrrd(*fields, data=b"abc\x39\x30"))
    info = inspect_upload(path, ".nrrd")
    assert info == HeaderInfo("nrrd", (1, 1, 1), np.dtype(np.uint16))
    assert info.data_bytes == 2 and info.memory_bytes == 4


@pytest.mark.parametrize(
    "line",
    [
        "data file: /etc/passwd",
        "datafile: x.raw",
        "DATA FILE: /etc/passwd",
        "data  file : /etc/passwd",
        "data file: LIST",
        "data file: slice%03d.raw 1 10 1",
        "data file:=/etc/passwd",
    ],
)
def test_nrrd_data_file_refused(tmp_path, line):
    path = write(tmp_path, "c.nrrd", nrrd(*BASE, line, "/etc/passwd", data=bytes(96)))
    with pytest.raises(DetachedData) as err:
        inspect_upload(path, ".nrrd")
    assert "/etc/passwd" not in str(err.value) and "x.raw" not in str(err.value)


def test_nrrd_data_file_hidden_after_a_carriage_return(tmp_path):
    """teem ends a line at a lone CR too; so must the check."""
    path = write(tmp_path, "d.nrrd", nrrd(*BASE, "data file: /etc/passwd", sep="\r"))
    with pytest.raises(DetachedData):
        inspect_upload(path, ".nrrd")
    glued = nrrd("type: uint8\rdata file: /etc/passwd", *BASE[1:])
    with pytest.raises(DetachedData):
        inspect_upload(write(tmp_path, "e.nrrd", glued), ".nrrd")


@pytest.mark.parametrize(
    "change, error, message",
    [
        ({"dimension": "dimension: 4", "sizes": "sizes: 1 2 3 4"}, InputError, "dimension 4"),
        ({"sizes": "sizes: 2 3"}, InputError, "sizes"),
        ({"sizes": "sizes: 2 0 4"}, InputError, "size 0"),
        ({"sizes": "sizes: 2 x 4"}, InputError, "sizes"),
        ({"type": "type: block"}, UnsupportedVoxelType, "voxel type"),
        ({"type": "type: secretvalue"}, UnsupportedVoxelType, "voxel type"),
        ({"type": ""}, UnsupportedVoxelType, "voxel type"),
        ({"encoding": "encoding: bzip2"}, InputError, "encoding"),
        ({"kinds": "kinds: 3-vector domain domain"}, UnsupportedVoxelType, "kinds"),
        ({"kinds": "kinds: complex domain domain"}, UnsupportedVoxelType, "kinds"),
    ],
)
def test_nrrd_fields_refused(tmp_path, change, error, message):
    fields = dict(zip(["type", "dimension", "sizes", "encoding", "endian"], BASE, strict=True))
    fields.update(change)
    path = write(tmp_path, "f.nrrd", nrrd(*[f for f in fields.values() if f], data=bytes(96)))
    with pytest.raises(error, match=message) as err:
        inspect_upload(path, ".nrrd")
    assert "secretvalue" not in str(err.value) and "bzip2" not in str(err.value)


def test_nrrd_header_framing(tmp_path):
    with pytest.raises(InputError, match="not a NRRD"):
        inspect_upload(write(tmp_path, "a.nrrd", b"NRRX0004\n\n"), ".nrrd")
    unterminated = ("\n".join(["NRRD0004", *BASE]) + "\n").encode()
    with pytest.raises(InputError, match="no empty line"):
        inspect_upload(write(tmp_path, "b.nrrd", unterminated), ".nrrd")
    long = nrrd(*BASE, *[f"# {'x' * 100}" for _ in range(700)])
    with pytest.raises(InputError, match="64 KiB"):
        inspect_upload(write(tmp_path, "c.nrrd", long), ".nrrd")
    with pytest.raises(InputError, match="twice"):
        inspect_upload(write(tmp_path, "d.nrrd", nrrd(*BASE, "type: uint8")), ".nrrd")


def test_memory_math_and_message():
    assert volume_memory_bytes((10, 10, 10), np.complex128) == 16000
    assert volume_memory_bytes((10, 10, 10), np.uint8) == 4000
    assert volume_memory_bytes((10, 10, 10), np.float64) == 8000
    info = HeaderInfo("nifti", (10, 10, 10), np.dtype(np.int16))
    assert info.data_bytes == 2000 and info.memory_bytes == 4000
    check_memory(info, limit=4000, source="s")
    check_memory((100, 100, 100), limit=4_000_000, source="s")
    with pytest.raises(
        VolumeTooLarge, match=r"s: .* more than the 100 MiB allowed .*--max-volume-mb"
    ):
        check_memory((1024, 1024, 26), limit=100 << 20, source="s")
    with pytest.raises(VolumeTooLarge, match="set MEDMOE_X to change"):
        check_memory((10, 10, 10), np.float64, limit=7999, source="s", what="MEDMOE_X")
    assert issubclass(VolumeTooLarge, InputError) and issubclass(DetachedData, InputError)
