"""The published architecture at full size: 324 keys, a strict round trip, one 128^3 forward."""

from __future__ import annotations

import pytest
import torch
from tests.sam3d.helpers import randomize_

from medmoe.sam3d import Sam3DPredictor, build_sam3d, save_sam3d_checkpoint
from medmoe.sam3d.reference import literal_attention_branch


@pytest.fixture(scope="module")
def vit_b():
    return randomize_(build_sam3d("vit_b_ori_box"), std=0.02)


def test_round_trip_in_published_format(tmp_path, vit_b):
    path = tmp_path / "sam_med3d_turbo.pth"
    save_sam3d_checkpoint(vit_b, path)
    loaded = build_sam3d("vit_b_ori_box", checkpoint=path)
    state = loaded.state_dict()
    assert len(state) == 326  # 324 published entries + the two box-corner embeddings
    for k, v in vit_b.state_dict().items():
        assert torch.equal(state[k], v), k


@pytest.mark.parametrize("index", [0, 2])  # a window block and a global block
def test_full_size_block_matches_literal(vit_b, index):
    block = vit_b.image_encoder.blocks[index]
    x = block.norm1(torch.randn(1, 8, 8, 8, 768))
    with torch.no_grad():
        fast = block.attn(x)
        ref = literal_attention_branch(block, x)
    assert ((fast - ref).abs().max() / ref.abs().max()) <= 1e-5


def test_full_encoder_forward_and_predict(vit_b):
    """One full vit_b forward at 128^3 through the predictor.

    The neck ends in a LayerNorm3d; with weight 1 and bias 0 every voxel's 384 channels then have
    mean 0 and variance s / (s + eps), where s is the channel variance entering the norm.
    """
    with torch.no_grad():
        vit_b.image_encoder.neck[3].weight.fill_(1.0)
        vit_b.image_encoder.neck[3].bias.zero_()
    pred = Sam3DPredictor(vit_b)
    seen = []
    hook = vit_b.image_encoder.neck[2].register_forward_hook(lambda m, i, o: seen.append(o))
    pred.set_image(torch.randn(128, 128, 128))
    hook.remove()
    s = seen[0].var(1, unbiased=False)
    emb = pred.features
    assert emb.shape == (1, 384, 8, 8, 8) and torch.isfinite(emb).all()
    torch.testing.assert_close(emb.mean(1), torch.zeros(1, 8, 8, 8), atol=1e-4, rtol=0)
    torch.testing.assert_close(emb.var(1, unbiased=False), s / (s + 1e-6), atol=1e-4, rtol=0)
    out = pred.predict(points=[[64, 64, 64]], labels=[1], box=[30, 30, 30, 90, 90, 90])
    assert out.logits.shape == (1, 1, 128, 128, 128) and torch.isfinite(out.logits).all()
