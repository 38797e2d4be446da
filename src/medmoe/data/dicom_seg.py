"""Masks as DICOM SEG (through highdicom), referencing the series they were drawn on.

A SEG made here is BINARY, one segment per label value, one frame per source slice that has
any foreground, and names medmoe, the model and the expert in each segment's
AlgorithmIdentificationSequence, so a PACS user can tell which model drew it. Reading one back
(:func:`read_dicom_seg`) gives a label map on the source series' voxel grid.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medmoe.errors import InputError, first_line
from medmoe.utils.files import atomic_write

# SNOMED CT "Anatomical structure": the property category and type when nothing finer is known
_ANATOMY = ("91723000", "SCT", "Anatomical structure")


@dataclass(frozen=True)
class Algorithm:
    """What drew the mask: written into every segment's algorithm identification."""

    model: str  # the SAM-Med3D checkpoint or bundle, by name
    expert: str = "general"  # the expert that made the mask ("general": the frozen model)
    version: str = ""  # medmoe's version


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("medmoe")
    except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
        return "0"


def seg_dataset(
    label_map: np.ndarray,
    headers: Sequence,
    *,
    segments: Mapping[int, str],
    algorithm: Algorithm,
):
    """A highdicom Segmentation of ``label_map`` (on the series' grid, k in ``headers``' order).

    ``segments`` maps each label value to its name; values absent from it are refused, and a
    value with no voxel still gets its segment (with no frame).
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    label_map = np.asarray(label_map)
    shape = (int(headers[0].Columns), int(headers[0].Rows), len(headers))
    if label_map.shape != shape:
        raise InputError(f"the mask has shape {label_map.shape}, the series {shape}")
    values = sorted(int(v) for v in segments if int(v) > 0)
    extra = sorted(set(np.unique(label_map).tolist()) - {0, *values})
    if not values or extra:
        raise InputError(f"label values {extra or 'none'} have no segment name")
    version = algorithm.version or _version()
    ident = hd.AlgorithmIdentificationSequence(
        name="medmoe",
        family=codes.DCM.ArtificialIntelligence,
        version=version,
        parameters={"model": algorithm.model, "expert": algorithm.expert},
    )
    anatomy = hd.sr.CodedConcept(*_ANATOMY)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=n,
            segment_label=str(segments[v])[:64],
            segmented_property_category=anatomy,
            segmented_property_type=anatomy,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
            algorithm_identification=ident,
        )
        for n, v in enumerate(values, start=1)
    ]
    # highdicom wants (frames, rows, columns, segments), frame f on headers[f]
    stacked = np.stack([label_map == v for v in values], axis=-1).transpose(2, 1, 0, 3)
    try:
        return hd.seg.Segmentation(
            source_images=list(headers),
            pixel_array=stacked.astype(np.uint8),
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=generate_uid(),
            series_number=int(getattr(headers[0], "SeriesNumber", 0) or 0) + 1000,
            sop_instance_uid=generate_uid(),
            instance_number=1,
            manufacturer="medmoe",
            manufacturer_model_name=algorithm.model[:64] or "medmoe",
            software_versions=version,
            device_serial_number="0",
            series_description=f"medmoe {algorithm.expert}"[:64],
        )
    except (ValueError, TypeError, AttributeError) as err:
        raise InputError(f"cannot make a DICOM SEG: {first_line(err)}") from None


def seg_bytes(label_map: np.ndarray, headers: Sequence, **kwargs) -> bytes:
    """:func:`seg_dataset` as the bytes of a DICOM Part 10 file."""
    buf = io.BytesIO()
    seg_dataset(label_map, headers, **kwargs).save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def write_dicom_seg(path: str | os.PathLike, label_map: np.ndarray, headers: Sequence, **kwargs):
    """Write :func:`seg_dataset` to ``path`` atomically."""
    path = Path(path)
    payload = seg_bytes(label_map, headers, **kwargs)
    with atomic_write(path) as tmp:
        tmp.write_bytes(payload)
    return path


def read_dicom_seg(source, headers: Sequence) -> tuple[np.ndarray, dict[int, str]]:
    """A SEG (path, bytes or dataset) as a label map on ``headers``' grid, and segment names.

    Overlapping segments keep the higher segment number.
    """
    import highdicom as hd
    import pydicom

    if isinstance(source, bytes):
        source = io.BytesIO(source)
    try:
        ds = source if isinstance(source, pydicom.Dataset) else pydicom.dcmread(source)
        seg = hd.seg.Segmentation.from_dataset(ds)
        uids = [str(h.SOPInstanceUID) for h in headers]
        pixels = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=uids,
            ignore_spatial_locations=True,
            assert_missing_frames_are_empty=True,
        )
    except Exception as err:  # noqa: BLE001 - anything that is not a readable SEG of this series
        raise InputError(f"not a DICOM SEG of this series: {first_line(err)}") from None
    numbers = seg.get_segment_numbers()
    out = np.zeros(pixels.shape[:3], dtype=np.uint8)
    for index, number in enumerate(numbers):
        out[pixels[..., index] > 0] = number
    names = {n: seg.get_segment_description(n).segment_label for n in numbers}
    return out.transpose(2, 1, 0), names
