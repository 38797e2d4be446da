"""Writing a volume as a DICOM MR series with pydicom, for tests: one file per k slice.

The geometry is written from the affine (RAS -> DICOM's LPS), so reading the series back must
give the same affine; pixel values are stored as uint16 with a rescale slope and intercept, so
reading must apply them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def series_datasets(
    array: np.ndarray,
    affine: np.ndarray,
    *,
    slope: float = 0.5,
    intercept: float = -100.0,
    series_uid: str | None = None,
    study_uid: str | None = None,
    description: str = "T1",
) -> list[FileDataset]:
    """The slices of ``array`` (i, j, k) as datasets; stored = (value - intercept) / slope."""
    lps = LPS @ np.asarray(affine, dtype=np.float64)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    row, col = lps[:3, 0] / spacing[0], lps[:3, 1] / spacing[1]
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    frame_uid = generate_uid()
    stored = np.rint((np.asarray(array, dtype=np.float64) - intercept) / slope)
    if stored.min() < 0 or stored.max() > 65535:
        raise ValueError("values do not fit uint16 with this slope and intercept")
    stored = stored.astype(np.uint16)
    out = []
    for k in range(array.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
        ds.PatientName, ds.PatientID = "Test^Brain", "MEDMOE0001"
        ds.PatientBirthDate, ds.PatientSex = "", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20260101", "120000", "1", ""
        ds.ReferringPhysicianName = ""
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "MR", 1, k + 1
        ds.SeriesDescription = description
        ds.FrameOfReferenceUID = frame_uid
        ds.PositionReferenceIndicator = ""
        ds.Manufacturer = "medmoe-tests"
        ds.ImagePositionPatient = [float(x) for x in lps[:3, 3] + k * lps[:3, 2]]
        ds.ImageOrientationPatient = [float(x) for x in (*row, *col)]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]  # row spacing, column spacing
        ds.SliceThickness = float(spacing[2])
        ds.Rows, ds.Columns = int(array.shape[1]), int(array.shape[0])
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()
        out.append(ds)
    return out


def write_series(folder: Path, array: np.ndarray, affine: np.ndarray, **kwargs) -> list[Path]:
    """:func:`series_datasets` written as ``folder/IM0001.dcm``...; the paths, in k order."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, ds in enumerate(series_datasets(array, affine, **kwargs)):
        path = folder / f"IM{k + 1:04d}.dcm"
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        paths.append(path)
    return paths
