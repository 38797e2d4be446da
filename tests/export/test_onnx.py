"""ONNX export: onnxruntime (CPU) gives torch's numbers; the CLI refuses bad input in one line."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from tests.sam3d.helpers import randomize_

from medmoe.export import OnnxSam3D, export_onnx, prompt_arrays
from medmoe.export.verify import rel_diff
from medmoe.moe import Gate, GateConfig, MoESam3D
from medmoe.sam3d import build_mask_decoder, build_sam3d

pytest.importorskip("onnxruntime")
TOL = 1e-4


@pytest.fixture(scope="module")
def moe():
    base = randomize_(build_sam3d("tiny"), std=0.05)
    experts = {
        name: randomize_(build_mask_decoder(base.config), std=0.05, seed=i + 1)
        for i, name in enumerate(("liver", "tumour"))
    }
    gate = randomize_(Gate(config=GateConfig(embed_dim=96, num_experts=2)), std=0.1, seed=9)
    return MoESam3D(base=base, experts=experts, gate=gate, tau=0.3).eval()


@pytest.fixture(scope="module")
def exported(moe, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx")
    export_onnx(out, model=moe.base, moe=moe, quantize="int8")
    return out, OnnxSam3D(out)


@pytest.fixture(scope="module")
def embedding(moe, exported):
    vol = torch.randn(1, 1, 128, 128, 128, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        emb = moe.base.image_encoder(vol)
    return vol, emb


def test_manifest_lists_every_file(exported):
    out, _ = exported
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["files"]) == {
        "image_encoder.onnx",
        "image_encoder.int8.onnx",
        "prompt_decoder.onnx",
        "gate.onnx",
        "experts/liver.onnx",
        "experts/tumour.onnx",
    }
    assert all((out / f).is_file() for f in manifest["files"])
    assert [e["name"] for e in manifest["moe"]["experts"]] == ["liver", "tumour"]  # gate order
    assert manifest["moe"]["tau"] == 0.3 and manifest["model_config"]["encoder_dim"] == 96


def test_embedding_matches_torch(exported, embedding):
    _, rt = exported
    vol, emb = embedding
    assert rel_diff(rt.embed(vol.numpy()), emb.numpy()) <= TOL


PROMPTS = {
    "one point": {"points": [[64, 60, 70]], "labels": [1]},
    "three points": {"points": [[64, 60, 70], [10, 20, 30], [127, 0, 5]], "labels": [1, 0, 1]},
    "box": {"box": [30, 35, 40, 90, 95, 100]},
    "point and box": {"points": [[64, 60, 70]], "labels": [0], "box": [30, 35, 40, 90, 95, 100]},
}


def _torch_prompts(p: dict):
    pts = None
    if "points" in p:
        pts = (torch.tensor([p["points"]], dtype=torch.float32), torch.tensor([p["labels"]]))
    box = torch.tensor([p["box"]], dtype=torch.float32) if "box" in p else None
    return pts, box


@pytest.mark.parametrize("with_mask", [False, True])
@pytest.mark.parametrize("name", list(PROMPTS))
def test_decoder_matches_torch(moe, exported, embedding, name, with_mask):
    _, rt = exported
    _, emb = embedding
    mask = torch.randn(1, 1, 32, 32, 32, generator=torch.Generator().manual_seed(3))
    pts, box = _torch_prompts(PROMPTS[name])
    with torch.inference_mode():
        low, iou = moe.base.decode(
            emb, points=pts, boxes=box, mask_input=mask if with_mask else None
        )
    kw = dict(PROMPTS[name], mask_input=mask.numpy() if with_mask else None)
    got_low, got_iou = rt.decode(emb.numpy(), **kw)
    assert got_low.shape == (1, 1, 32, 32, 32)
    assert rel_diff(got_low, low.numpy()) <= TOL
    assert rel_diff(got_iou, iou.numpy()) <= TOL


def test_gate_and_experts_match_torch(moe, exported, embedding):
    _, rt = exported
    _, emb = embedding
    p = PROMPTS["three points"]
    pts, _ = _torch_prompts(p)
    with torch.inference_mode():
        sparse, dense = moe.base.prompt_encoder(pts, None, None)
        pe = moe.base.prompt_encoder.get_dense_pe()
        probs = moe.gate(emb, pe, sparse)
        for entry in rt.manifest["moe"]["experts"]:
            want, _ = moe.experts[entry["name"]](emb, pe, sparse, dense)
            got, _ = rt.decode(emb.numpy(), decoder=entry["file"], **p)
            assert rel_diff(got, want.numpy()) <= TOL, entry["name"]
    got = rt.gate(emb.numpy(), **p)
    assert got.shape == (1, 3) and rel_diff(got, probs.numpy()) <= TOL


def test_int8_encoder_runs_and_stays_close(exported, embedding):
    out, _ = exported
    vol, emb = embedding
    q = OnnxSam3D(out, int8=True).embed(vol.numpy())
    assert q.shape == emb.shape
    # int8 weights are not exact: close, but not float32-close (so the test can tell them apart)
    assert 1e-6 < rel_diff(q, emb.numpy()) < 0.5


def test_spin_option_reaches_the_sessions(exported, embedding):
    """``spin=False`` sets onnxruntime's allow_spinning to 0 in the sessions it opens; the
    default leaves onnxruntime's own (spinning on) and gives the same numbers."""
    out, _ = exported
    vol, emb = embedding
    quiet, default = OnnxSam3D(out, spin=False), OnnxSam3D(out)
    key = "session.intra_op.allow_spinning"
    assert quiet._opts.get_session_config_entry(key) == "0"
    assert default._opts.get_session_config_entry(key) == "1"
    assert (
        quiet.session("image_encoder.onnx").get_session_options().get_session_config_entry(key)
        == "0"
    )
    assert rel_diff(quiet.embed(vol.numpy()), emb.numpy()) <= TOL


def test_prompt_arrays_order_by_hand():
    a = prompt_arrays(points=[[1, 2, 3], [4, 5, 6]], labels=[1, 0], low_res=32)
    np.testing.assert_array_equal(a["point_labels"], [[1, 0, -1]])  # the padding token last
    np.testing.assert_array_equal(a["point_coords"][0, :2], [[1, 2, 3], [4, 5, 6]])
    assert a["has_mask_input"][0] == 0 and a["mask_input"].shape == (1, 1, 32, 32, 32)
    b = prompt_arrays(points=[[1, 2, 3]], labels=[1], box=[0, 1, 2, 7, 8, 9], low_res=32)
    np.testing.assert_array_equal(b["point_labels"], [[1, 2, 3]])  # box corners, no padding
    np.testing.assert_array_equal(b["point_coords"][0, 1:], [[0, 1, 2], [7, 8, 9]])


def _cli(*args):
    cmd = [sys.executable, "-m", "medmoe.cli.main", "export", "onnx", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_cli_exports_a_checkpoint(moe, tmp_path):
    from medmoe.sam3d import save_sam3d_checkpoint

    ckpt = tmp_path / "tiny.pth"
    save_sam3d_checkpoint(moe.base, ckpt)
    r = _cli("--checkpoint", ckpt, "--out", tmp_path / "out", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "manifest.json").is_file()
    diffs = [float(ln.rsplit(" ", 1)[1]) for ln in r.stdout.splitlines() if "relative" in ln]
    assert len(diffs) == 2 and max(diffs) <= TOL


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--checkpoint", "{tmp}/missing.pth", "--out", "{tmp}/o"], "checkpoint not found"),
        (["--checkpoint", "{tmp}/file.txt", "--out", "{tmp}/file.txt"], "not a directory"),
        (["--moe", "{tmp}", "--out", "{tmp}/o"], "moe.json"),
    ],
)
def test_cli_bad_input_is_one_line(tmp_path, args, message, capsys):
    from medmoe.cli.main import main

    (tmp_path / "file.txt").write_text("x")
    code = main(["export", "onnx", *[a.format(tmp=tmp_path) for a in args]])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and message in err, err
