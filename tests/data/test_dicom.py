"""DICOM series in: geometry against SimpleITK's reader and by hand, and every refusal."""

from __future__ import annotations

import zipfile

import numpy as np
import pydicom
import pytest
from tests.data.dicomkit import write_series

from medmoe.data import load_volume
from medmoe.data.dicom import list_series, read_series, slice_geometry
from medmoe.data.headers import VolumeTooLarge
from medmoe.errors import InputError


def oblique_affine() -> np.ndarray:
    """Rotated about two axes, anisotropic (0.9, 1.1, 2.5 mm), off-centre: a real scanner's."""
    a, b = np.radians(20), np.radians(-10)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ rx @ np.diag([0.9, 1.1, 2.5])
    affine[:3, 3] = [-40.0, 25.0, -12.5]
    return affine


@pytest.fixture
def scan():
    rng = np.random.default_rng(0)
    array = (rng.integers(0, 2000, size=(12, 10, 7)) * 0.5 - 100).astype(np.float32)
    return array, oblique_affine()


def test_series_reads_back_its_values_and_geometry(tmp_path, scan):
    array, affine = scan
    write_series(tmp_path / "s", array, affine)
    vol = load_volume(tmp_path / "s")
    np.testing.assert_array_equal(vol.array, array)  # slope 0.5, intercept -100 applied
    np.testing.assert_allclose(vol.affine, affine, atol=1e-5)


def test_geometry_matches_simpleitk(tmp_path, scan):
    sitk = pytest.importorskip("SimpleITK")
    array, affine = scan
    write_series(tmp_path / "s", array, affine)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path / "s")))
    ref = reader.Execute()
    direction = np.array(ref.GetDirection()).reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = direction * np.array(ref.GetSpacing())
    lps[:3, 3] = ref.GetOrigin()
    vol = load_volume(tmp_path / "s")
    np.testing.assert_allclose(vol.affine, np.diag([-1, -1, 1, 1]) @ lps, atol=1e-4)
    ref_array = sitk.GetArrayFromImage(ref).transpose(2, 1, 0)  # (k, j, i) -> (i, j, k)
    np.testing.assert_allclose(vol.array, ref_array, atol=1e-4)


def test_slices_are_stacked_by_position_not_by_file_name(tmp_path, scan):
    array, affine = scan
    paths = write_series(tmp_path / "s", array, affine)
    for n, path in enumerate(paths):  # file names now run against the positions
        path.rename(path.with_name(f"X{len(paths) - n:04d}.dcm"))
    np.testing.assert_array_equal(load_volume(tmp_path / "s").array, array)


def test_slice_geometry_by_hand():
    positions = np.array([[0, 0, 4.0], [0, 0, 0.0], [0, 0, 2.0]])
    orientations = np.tile([1.0, 0, 0, 0, 1, 0], (3, 1))
    spacings = np.tile([0.5, 0.75], (3, 1))  # row spacing 0.5, column spacing 0.75
    order, lps = slice_geometry(positions, orientations, spacings, source="x")
    assert order.tolist() == [1, 2, 0]
    expected = np.array([[0.75, 0, 0, 0], [0, 0.5, 0, 0], [0, 0, 2.0, 0], [0, 0, 0, 1]])
    np.testing.assert_allclose(lps, expected)


def test_a_zip_and_one_file_stand_for_the_series(tmp_path, scan):
    array, affine = scan
    paths = write_series(tmp_path / "s", array, affine)
    with zipfile.ZipFile(tmp_path / "s.zip", "w") as zf:
        for p in paths:
            zf.write(p, f"series/{p.name}")
        zf.writestr("README.txt", "not dicom")
    np.testing.assert_array_equal(load_volume(tmp_path / "s.zip").array, array)
    np.testing.assert_array_equal(load_volume(paths[3]).array, array)


def test_several_series_are_refused_with_their_list_unless_one_is_chosen(tmp_path, scan):
    array, affine = scan
    write_series(tmp_path / "s" / "a", array, affine, series_uid="1.2.3.4", description="T1")
    write_series(tmp_path / "s" / "b", array + 1, affine, series_uid="1.2.3.5", description="T2")
    assert [(s.uid, s.description, s.files) for s in list_series(tmp_path / "s")] == [
        ("1.2.3.4", "T1", 7),
        ("1.2.3.5", "T2", 7),
    ]
    with pytest.raises(
        InputError, match=r"2 series, choose one with --series UID: 1\.2\.3\.4 \(T1"
    ):
        load_volume(tmp_path / "s")
    np.testing.assert_array_equal(load_volume(tmp_path / "s", series="1.2.3.5").array, array + 1)
    with pytest.raises(InputError, match="no series 9.9"):
        load_volume(tmp_path / "s", series="9.9")


def _edit(path, **changes):
    ds = pydicom.dcmread(path)
    for key, value in changes.items():
        setattr(ds, key, value)
    ds.save_as(path)


def test_a_missing_slice_is_refused(tmp_path, scan):
    paths = write_series(tmp_path / "s", *scan)
    paths[3].unlink()
    with pytest.raises(InputError, match=r"1 slice\(s\) missing \(a gap of 5\.00 mm after slice 3"):
        load_volume(tmp_path / "s")


def test_non_uniform_spacing_is_refused(tmp_path, scan):
    array, affine = scan
    paths = write_series(tmp_path / "s", array, affine)
    last = np.array(pydicom.dcmread(paths[-1]).ImagePositionPatient, dtype=float)
    step = np.diag([-1, -1, 1]) @ affine[:3, 2]
    _edit(paths[-1], ImagePositionPatient=[float(x) for x in last + 0.4 * step])
    with pytest.raises(InputError, match=r"non-uniform slice spacing \(2\.50 to 3\.50 mm\)"):
        load_volume(tmp_path / "s")


def test_gantry_tilt_is_refused(tmp_path):
    array = np.arange(4 * 4 * 5, dtype=np.float32).reshape(4, 4, 5)
    paths = write_series(tmp_path / "s", array, np.diag([1.0, 1.0, 2.0, 1.0]))
    for k, path in enumerate(paths):  # each slice 0.35 mm further along y: a 10-degree tilt
        ds = pydicom.dcmread(path)
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        _edit(path, ImagePositionPatient=[x, y + 0.35 * k, z])
    with pytest.raises(InputError, match=r"gantry tilt of 9\.9 degrees"):
        load_volume(tmp_path / "s")


def test_two_slices_at_one_position_and_one_slice_are_refused(tmp_path, scan):
    paths = write_series(tmp_path / "s", *scan)
    pos = pydicom.dcmread(paths[0]).ImagePositionPatient
    _edit(paths[1], ImagePositionPatient=pos)
    with pytest.raises(InputError, match="two slices at the same position"):
        load_volume(tmp_path / "s")
    array, affine = scan
    write_series(tmp_path / "one", array[:, :, :1], affine)
    with pytest.raises(InputError, match="one slice is a 2-D image"):
        load_volume(tmp_path / "one")


def test_the_memory_limit_is_checked_before_any_pixel_is_read(tmp_path, scan, monkeypatch):
    write_series(tmp_path / "s", *scan)
    import medmoe.data.dicom as dicom

    def no_pixels(*args, **kwargs):
        raise AssertionError("pixels read")

    monkeypatch.setattr(dicom, "_pixels", no_pixels)
    with pytest.raises(VolumeTooLarge, match="needs"):
        read_series(tmp_path / "s", max_bytes=1000)


def test_not_dicom_and_labels_from_a_folder_are_one_line_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.txt").write_text("hello")
    with pytest.raises(InputError, match="no DICOM image files found"):
        load_volume(tmp_path / "empty")
    (tmp_path / "bad.zip").write_bytes(b"PK not a zip")
    with pytest.raises(InputError, match="not a readable zip"):
        load_volume(tmp_path / "bad.zip")
    from medmoe.data import load_label

    with pytest.raises(InputError, match="a folder is read as a DICOM series only"):
        load_label(tmp_path / "empty")


def test_dicom_seg_round_trip_names_medmoe_the_model_and_the_expert(tmp_path, scan):
    from medmoe.data.dicom_seg import Algorithm, read_dicom_seg, write_dicom_seg

    array, affine = scan
    write_series(tmp_path / "s", array, affine)
    series = read_series(tmp_path / "s")
    mask = np.zeros(array.shape, dtype=np.uint8)
    mask[2:6, 3:8, 1:4] = 1
    mask[8:10, 1:3, 5] = 2
    out = write_dicom_seg(
        tmp_path / "mask.dcm",
        mask,
        series.headers,
        segments={1: "hippocampus", 2: "amygdala"},
        algorithm=Algorithm(model="medmoe-brain", expert="limbic", version="9.9"),
    )
    ds = pydicom.dcmread(out)
    assert ds.Modality == "SEG" and ds.SegmentationType == "BINARY"
    refs = {r.SeriesInstanceUID for r in ds.ReferencedSeriesSequence}
    assert refs == {series.uid}
    seg1 = ds.SegmentSequence[0]
    assert seg1.SegmentLabel == "hippocampus" and seg1.SegmentAlgorithmName == "medmoe"
    ident = seg1.SegmentationAlgorithmIdentificationSequence[0]
    assert ident.AlgorithmName == "medmoe" and ident.AlgorithmVersion == "9.9"
    assert "model=medmoe-brain" in ident.AlgorithmParameters
    assert "expert=limbic" in ident.AlgorithmParameters
    assert ds.NumberOfFrames == 3 + 1  # slices 1-3 of segment 1, slice 5 of segment 2
    back, names = read_dicom_seg(out, series.headers)
    np.testing.assert_array_equal(back, mask)
    assert names == {1: "hippocampus", 2: "amygdala"}


def test_dicom_seg_refuses_a_mask_off_the_series_grid_or_an_unnamed_value(tmp_path, scan):
    from medmoe.data.dicom_seg import Algorithm, seg_dataset

    write_series(tmp_path / "s", *scan)
    headers = read_series(tmp_path / "s").headers
    algo = Algorithm(model="m")
    with pytest.raises(
        InputError, match=r"the mask has shape \(3, 3, 3\), the series \(12, 10, 7\)"
    ):
        seg_dataset(np.zeros((3, 3, 3)), headers, segments={1: "a"}, algorithm=algo)
    mask = np.zeros(scan[0].shape, dtype=np.uint8)
    mask[0, 0, 0] = 3
    with pytest.raises(InputError, match=r"label values \[3\] have no segment name"):
        seg_dataset(mask, headers, segments={1: "a"}, algorithm=algo)
