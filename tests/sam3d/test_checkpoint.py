"""Checkpoint loading: the published format, its variants, and clear refusals."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from tests.sam3d.helpers import randomize_

from medmoe.errors import CheckpointError
from medmoe.sam3d import build_sam3d, load_sam3d_checkpoint, save_sam3d_checkpoint
from medmoe.sam3d.checkpoint import identify


@pytest.fixture(scope="module")
def tiny_state():
    return {k: v.clone() for k, v in randomize_(build_sam3d("tiny")).state_dict().items()}


def _assert_same(model, state):
    got = model.state_dict()
    assert set(got) == set(state)
    for k, v in state.items():
        assert torch.equal(got[k], v), k


def test_published_format_round_trips_strictly(tmp_path, tiny_state):
    model = build_sam3d("tiny")
    model.load_state_dict(tiny_state)
    path = tmp_path / "sam_med3d_tiny.pth"
    save_sam3d_checkpoint(model, path)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert set(raw) == {"model_state_dict"}
    _assert_same(build_sam3d("tiny", checkpoint=path), tiny_state)


@pytest.mark.parametrize("form", ["bare", "module_prefix", "wrapped_module_prefix"])
def test_accepted_variants(tmp_path, tiny_state, form):
    state = tiny_state
    if form != "bare":
        state = {f"module.{k}": v for k, v in state.items()}
    obj = {"model_state_dict": state, "epoch": 3} if form.startswith("wrapped") else state
    torch.save(obj, tmp_path / "ck.pth")
    _assert_same(build_sam3d("tiny", checkpoint=tmp_path / "ck.pth"), tiny_state)


def test_missing_key_is_named(tmp_path, tiny_state):
    state = dict(tiny_state)
    del state["mask_decoder.iou_token.weight"]
    torch.save({"model_state_dict": state}, tmp_path / "ck.pth")
    with pytest.raises(CheckpointError, match=r"missing keys: mask_decoder\.iou_token\.weight"):
        build_sam3d("tiny", checkpoint=tmp_path / "ck.pth")


def test_wrong_model_names_the_builder_that_fits(tmp_path):
    """A tiny checkpoint loaded as vit_b_ori: the error says it fits 'tiny'."""
    torch.save({"model_state_dict": build_sam3d("tiny").state_dict()}, tmp_path / "ck.pth")
    with pytest.raises(CheckpointError, match=r"fits the registered model 'tiny'"):
        build_sam3d("vit_b_ori", checkpoint=tmp_path / "ck.pth")


def test_box_keys_identify_the_box_variant():
    with torch.device("meta"):
        plain = build_sam3d("vit_b_ori").state_dict()
        box = build_sam3d("vit_b_ori_box").state_dict()
    assert len(plain) == 324
    assert set(box) - set(plain) == {
        "prompt_encoder.point_embeddings.2.weight",
        "prompt_encoder.point_embeddings.3.weight",
    }
    assert identify(plain) == "vit_b_ori" and identify(box) == "vit_b_ori_box"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "cannot read checkpoint|could not be loaded"),
        (b"not a zip file at all" * 10, "could not be loaded as a weights-only checkpoint"),
    ],
)
def test_unreadable_files(tmp_path, content, message):
    (tmp_path / "bad.pth").write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_sam3d_checkpoint(tmp_path / "bad.pth")


def test_truncated_file(tmp_path, tiny_state):
    torch.save({"model_state_dict": tiny_state}, tmp_path / "ck.pth")
    data = (tmp_path / "ck.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_sam3d_checkpoint(tmp_path / "cut.pth")


def test_not_a_state_dict(tmp_path):
    torch.save({"model_state_dict": {"a": 1}}, tmp_path / "ck.pth")
    with pytest.raises(CheckpointError, match="non-tensor entries"):
        load_sam3d_checkpoint(tmp_path / "ck.pth")
    with pytest.raises(CheckpointError, match="not found"):
        load_sam3d_checkpoint(tmp_path / "absent.pth")


class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_code_executing_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    with open(tmp_path / "evil.pth", "wb") as fh:
        pickle.dump({"model_state_dict": _Payload(str(marker))}, fh)
    torch.save({"model_state_dict": {"x": _Payload(str(marker))}}, tmp_path / "evil_zip.pth")
    for name in ("evil.pth", "evil_zip.pth"):
        with pytest.raises(CheckpointError, match="could not be loaded as a weights-only"):
            load_sam3d_checkpoint(tmp_path / name)
    assert not marker.exists()


def test_load_sam3d_identifies_the_architecture(tmp_path):
    from medmoe.sam3d import build_sam3d, load_sam3d, save_sam3d_checkpoint

    torch.manual_seed(3)
    model = build_sam3d("tiny")
    path = tmp_path / "tiny.pth"
    save_sam3d_checkpoint(model, path)
    loaded = load_sam3d(path)
    assert loaded.config == model.config
    for (k, a), (k2, b) in zip(
        model.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert k == k2 and torch.equal(a, b)
