"""load_volume on hostile local files: detached data files outside the header's folder, voxel
values in error messages, complex voxels, the real voxel size in the memory check, nibabel noise."""

from __future__ import annotations

import logging
import os
import warnings

import nibabel as nib
import numpy as np
import pytest

from medmoe.data import io
from medmoe.data.headers import DetachedData, UnsupportedVoxelType, VolumeTooLarge
from medmoe.data.io import load_label, load_volume
from medmoe.data.volume import check_geometry
from medmoe.errors import InputError

sitk = pytest.importorskip("SimpleITK")

ARR = np.arange(4 * 3 * 2, dtype=np.int16).reshape(4, 3, 2) * 3 - 7  # (x, y, z)


def nhdr(path, data_file: str, *, extra: str = "") -> os.PathLike:
    path.write_text(
        "NRRD0004\ntype: int16\ndimension: 3\nsizes: 4 3 2\nencoding: raw\nendian: little\n"
        f"space: left-posterior-superior\n{extra}data file: {data_file}\n"
    )
    return path


def raw(path):
    path.write_bytes(ARR.astype("<i2").tobytes(order="F"))  # NRRD: x varies fastest
    return path


def test_nhdr_with_sibling_raw(tmp_path):
    raw(tmp_path / "vol.raw")
    vol = load_volume(nhdr(tmp_path / "vol.nhdr", "vol.raw"))
    assert vol.array.dtype == np.float32 and np.array_equal(vol.array, ARR)
    (tmp_path / "sub").mkdir()
    raw(tmp_path / "sub" / "v.raw")
    assert np.array_equal(load_volume(nhdr(tmp_path / "b.nhdr", "sub/v.raw")).array, ARR)
    absolute = nhdr(tmp_path / "c.nhdr", str(tmp_path / "vol.raw"))
    assert np.array_equal(load_volume(absolute).array, ARR)


@pytest.mark.parametrize(
    "target", ["../outside.raw", "/dev/zero", "LIST", "v%03d.raw 1 2 1", "link.raw", "fifo.raw"]
)
def test_nhdr_data_file_escaping_refused(tmp_path, target):
    folder = tmp_path / "in"
    folder.mkdir()
    outside = raw(tmp_path / "outside.raw")
    (folder / "link.raw").symlink_to(outside)
    os.mkfifo(folder / "fifo.raw")  # ITK would block reading it; the check never opens it
    header = nhdr(folder / "scan.nhdr", target)
    with pytest.raises(DetachedData) as err:
        load_volume(header)
    assert str(err.value).startswith(str(header)) and len(str(err.value).splitlines()) == 1
    assert "outside" not in str(err.value) and "/dev" not in str(err.value)


def test_nrrd_suffix_with_other_content_is_not_read_by_another_io(tmp_path):
    img = sitk.GetImageFromArray(ARR.transpose(2, 1, 0).astype(np.float32))
    sitk.WriteImage(img, str(tmp_path / "real.mha"))
    disguised = tmp_path / "x.nrrd"
    disguised.write_bytes((tmp_path / "real.mha").read_bytes())
    with pytest.raises(InputError, match="not a NRRD"):
        load_volume(disguised)


def write_mhd(path, element_data_file: str):
    path.write_text(
        "ObjectType = Image\nNDims = 3\nDimSize = 4 3 2\nElementType = MET_SHORT\n"
        f"ElementByteOrderMSB = False\nElementDataFile = {element_data_file}\n"
    )
    return path


def test_metaimage_data_files(tmp_path):
    with pytest.raises(DetachedData):
        load_volume(write_mhd(tmp_path / "a.mhd", "/etc/hostname"))
    raw(tmp_path / "outside.raw")
    (tmp_path / "in").mkdir()
    with pytest.raises(DetachedData):
        load_volume(write_mhd(tmp_path / "in" / "b.mhd", "../outside.raw"))
    with pytest.raises(DetachedData):
        load_volume(write_mhd(tmp_path / "in" / "c.mha", "LIST"))
    # a sibling .raw is allowed
    assert np.array_equal(load_volume(write_mhd(tmp_path / "d.mhd", "outside.raw")).array, ARR)
    # LOCAL in a .mha, as SimpleITK writes it
    img = sitk.GetImageFromArray(ARR.transpose(2, 1, 0))
    sitk.WriteImage(img, str(tmp_path / "e.mha"))
    assert b"ElementDataFile = LOCAL" in (tmp_path / "e.mha").read_bytes()[:1000]
    assert np.array_equal(load_volume(tmp_path / "e.mha").array, ARR)
    sitk.WriteImage(img, str(tmp_path / "f.mhd"))  # writes a sibling data file
    assert np.array_equal(load_volume(tmp_path / "f.mhd").array, ARR)


def test_itk_vector_and_complex_refused(tmp_path):
    vec = sitk.GetImageFromArray(np.ones((2, 3, 4, 3), np.float32), isVector=True)
    sitk.WriteImage(vec, str(tmp_path / "v.nrrd"))
    with pytest.raises(UnsupportedVoxelType, match="multi-component"):
        load_volume(tmp_path / "v.nrrd")
    cplx = tmp_path / "c.nrrd"
    cplx.write_bytes(
        b"NRRD0004\ntype: float\ndimension: 4\nsizes: 2 4 3 2\nkinds: complex domain domain domain"
        b"\nencoding: raw\nendian: little\n\n" + bytes(4 * 2 * 24)
    )
    with pytest.raises(UnsupportedVoxelType, match="complex|multi-component"):
        load_volume(cplx)


def test_constant_image_message_has_no_value(tmp_path):
    path = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(np.full((5, 5, 5), 12345, np.int16), np.eye(4)), str(path))
    with pytest.raises(InputError, match="constant image") as err:
        load_volume(path)
    assert "12345" not in str(err.value)
    neg = tmp_path / "neg.nii.gz"
    nib.save(nib.Nifti1Image(np.full((5, 5, 5), -4321, np.int16), np.eye(4)), str(neg))
    with pytest.raises(InputError, match="negative") as err:
        load_label(neg)
    assert "4321" not in str(err.value)


def test_complex_nifti_refused_and_memory_uses_the_real_type(tmp_path):
    path = tmp_path / "c.nii"
    nib.save(nib.Nifti1Image(np.ones((10, 10, 10), np.complex128), np.eye(4)), str(path))
    with pytest.raises(UnsupportedVoxelType, match="complex voxels are refused"):
        load_volume(path, max_bytes=1 << 30)
    check_geometry((10, 10, 10), np.eye(4), source="s", limit=15999)  # float32: 4000 bytes
    with pytest.raises(VolumeTooLarge, match="16000|MiB"):
        check_geometry((10, 10, 10), np.eye(4), source="s", dtype=np.complex128, limit=15999)
    f64 = tmp_path / "d.nii"
    arr = np.random.default_rng(0).random((10, 10, 10))
    nib.save(nib.Nifti1Image(arr, np.eye(4)), str(f64))
    assert np.allclose(load_volume(f64, max_bytes=8000).array, arr)
    with pytest.raises(VolumeTooLarge, match="--max-volume-mb"):
        load_volume(f64, max_bytes=7999)
    with pytest.raises(VolumeTooLarge):
        load_label(f64, max_bytes=7999)


def test_env_limit_uses_the_real_type(tmp_path, monkeypatch):
    f64 = tmp_path / "d.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((10, 10, 10)), np.eye(4)), str(f64))
    monkeypatch.setenv("MEDMOE_MAX_VOLUME_BYTES", "7999")
    with pytest.raises(VolumeTooLarge, match="MEDMOE_MAX_VOLUME_BYTES"):
        load_volume(f64)
    monkeypatch.setenv("MEDMOE_MAX_VOLUME_BYTES", "8000")
    assert load_volume(f64).array.shape == (10, 10, 10)


def test_bad_nifti_prints_nothing(tmp_path, capfd, caplog):
    img = nib.Nifti1Image(np.random.default_rng(0).random((4, 4, 4)).astype(np.float32), np.eye(4))
    payload = bytearray(img.to_bytes())
    payload[108:112] = np.array([10.0], "<f4").tobytes()  # vox_offset too low: nibabel logs it
    path = tmp_path / "bad.nii"
    path.write_bytes(bytes(payload))
    logger = logging.getLogger("nibabel.global")
    level = logger.level
    with caplog.at_level(logging.DEBUG), warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(InputError, match="cannot read"):
            load_volume(path)
        assert seen == []
    assert caplog.records == [] and capfd.readouterr().err == ""
    assert logger.level == level
    with caplog.at_level(logging.DEBUG), pytest.raises(Exception, match="vox offset"):
        nib.load(str(path))  # read without the guard, the file does make nibabel log
    assert any("vox offset" in r.getMessage() for r in caplog.records)


def test_warnings_from_the_reader_are_silenced_and_restored(tmp_path, monkeypatch):
    def noisy(*_args, **_kwargs):
        warnings.warn("noisy nibabel", UserWarning, stacklevel=1)
        logging.getLogger("nibabel.global").error("noisy log line")
        raise ValueError("broken")

    monkeypatch.setattr(io.nib, "load", noisy)
    path = tmp_path / "x.nii"
    path.write_bytes(b"x")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(InputError, match="ValueError: broken"):
            load_volume(path)
        assert seen == []
        warnings.warn("after", UserWarning, stacklevel=1)  # the filters are back
        assert [str(w.message) for w in seen] == ["after"]
