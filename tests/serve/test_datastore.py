"""The MONAI Label datastore and the multipart codec, without a server."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tests.serve.conftest import AFFINE

from medmoe.data import load_label
from medmoe.errors import InputError
from medmoe.serve.monailabel.datastore import Datastore
from medmoe.serve.monailabel.files import base_name, check_id, check_tag
from medmoe.serve.monailabel.labelfile import nrrd_bytes
from medmoe.serve.monailabel.multipart import encode_form, form_params, parse_form


@pytest.mark.parametrize(
    "value, ok",
    [
        ("case 1", True),
        ("2: AX T1 (post)", True),  # a Slicer volume name from DICOM
        ("MRHead", True),
        ("../../etc/passwd", False),
        ("..", False),
        ("a/b", False),
        ("a\\b", False),
        (".hidden", False),
        ("~root", False),
        ("x\x00y", False),
        ("", False),
        ("x" * 129, False),
    ],
)
def test_image_ids(value, ok):
    if ok:
        assert check_id(value) == value
    else:
        with pytest.raises(InputError):
            check_id(value)


@pytest.mark.parametrize(
    "tag, ok", [("final", True), ("original", True), ("", True), ("..", False), ("a b", False)]
)
def test_tags(tag, ok):
    if ok:
        assert check_tag(tag) == (tag or "final")
    else:
        with pytest.raises(InputError):
            check_tag(tag)


def test_client_file_names_give_their_last_component_only():
    assert base_name("/tmp/slicer/tmpab12.nii.gz") == "tmpab12.nii.gz"
    assert base_name("C:\\Users\\me\\scan.nrrd") == "scan.nrrd"
    with pytest.raises(InputError, match=r"'\.\.'"):
        base_name("../../scan.nii.gz")


def test_datastore_persists_and_refuses_a_bad_index(tmp_path, scan_path):
    store = Datastore(root=tmp_path / "ml")
    upload, label = tmp_path / "upload", tmp_path / "label"
    upload.write_bytes(scan_path.read_bytes())
    label.write_bytes(b"\x1f\x8b" + bytes(30))
    store.add_image("case", upload, "/x/scan.nii.gz", {"client_id": "me"}, overwrite=False)
    store.save_label("case", "final", label, "label.nii.gz", {})
    assert not upload.exists() and not label.exists()  # moved into the datastore
    again = Datastore(root=tmp_path / "ml")  # a restart: the index is read back
    assert again.to_json()["objects"]["case"]["labels"]["final"]["ext"] == ".nii.gz"
    assert again.status() == {"total": 1, "completed": 1, "label_tags": {"final": 1}}
    assert again.volume("case")[0].array.shape == (70, 40, 60)
    index = tmp_path / "ml" / "datastore.json"
    entry = json.loads(index.read_text())["objects"]["case"]
    entry["image"]["file"] = "../../outside"  # an index edited by hand may not name paths
    for bad in ({"objects": 3}, {"nothing": {}}, {"objects": {"case": entry}}):
        index.write_text(json.dumps(bad))
        with pytest.raises(InputError, match="not a medmoe datastore index"):
            Datastore(root=tmp_path / "ml")


def test_multipart_round_trip():
    data = bytes(range(256)) * 3 + b"\r\n--not-the-boundary\r\n"
    ctype, body = encode_form(
        [("params", None, "application/json", b'{"a": 1}'), ("image", "x.nii.gz", "b", data)]
    )
    parts = parse_form(body, ctype)
    assert parts["image"].data == data and parts["image"].filename == "x.nii.gz"
    assert parts["params"].filename is None and form_params(parts) == {"a": 1}
    for bad in (b"", b"--" + ctype.split("=")[1].encode() + b"\r\nno end"):
        with pytest.raises(InputError):
            parse_form(bad, ctype)
    with pytest.raises(InputError, match="multipart"):
        parse_form(body, "application/json")


def test_nrrd_is_read_back_with_the_same_voxels_and_affine(tmp_path):
    # LSA axes: the NRRD's LPS directions are the RAS columns with x and y negated
    array = np.zeros((7, 5, 6), dtype=np.uint8)
    array[1:3, 2, 4] = 1
    array[6, 4, 5] = 3
    for compress in (True, False):
        path = tmp_path / f"l{compress}.nrrd"
        path.write_bytes(nrrd_bytes(array, AFFINE, compress=compress))
        vol = load_label(path)
        assert np.array_equal(vol.array, array) and np.allclose(vol.affine, AFFINE)
    head = path.read_bytes().split(b"\n\n")[0].decode()
    assert "space directions: (0.9,0.0,0.0) (0.0,0.0,1.1) (0.0,-2.5,0.0)" in head
    assert "space origin: (-40.0,30.0,10.0)" in head
