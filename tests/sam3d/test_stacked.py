"""Stacked decoders (one batched call) equal the decoders run one by one."""

from __future__ import annotations

import pytest
import torch
from tests.sam3d.helpers import randomize_

from medmoe.sam3d import SAM3D_CONFIGS, build_mask_decoder, build_sam3d
from medmoe.sam3d.stacked import StackedDecoders


@pytest.mark.parametrize("batch", [1, 2])
def test_stacked_equals_one_by_one(batch):
    model = randomize_(build_sam3d("tiny"), std=0.05)
    decoders = [model.mask_decoder] + [
        randomize_(build_mask_decoder(SAM3D_CONFIGS["tiny"]), std=0.05, seed=s) for s in (3, 4)
    ]
    gen = torch.Generator().manual_seed(0)
    emb = torch.randn(1, 96, 8, 8, 8, generator=gen)
    pts = (torch.rand(batch, 3, 3, generator=gen) * 127, torch.tensor([[1, 0, 1]] * batch))
    mask = torch.randn(batch, 1, 32, 32, 32, generator=gen)
    with torch.no_grad():
        sparse, dense = model.prompt_encoder(pts, None, mask)
        pe = model.prompt_encoder.get_dense_pe()
        masks, iou = StackedDecoders(decoders)(emb, pe, sparse, dense)
        assert masks.shape == (3, batch, 1, 32, 32, 32) and iou.shape == (3, batch, 1)
        for i, dec in enumerate(decoders):
            want, want_iou = dec(emb, pe, sparse, dense)
            assert ((masks[i] - want).abs().max() / want.abs().max()) <= 1e-5
            torch.testing.assert_close(iou[i], want_iou, rtol=1e-5, atol=1e-6)
    # The decoders differ, so the test would notice a mix-up of their weights.
    assert (masks[0] - masks[1]).abs().max() > 0.1 * masks[0].abs().max()


def test_refuses_different_architectures():
    a = build_mask_decoder(SAM3D_CONFIGS["tiny"])
    b = build_mask_decoder(SAM3D_CONFIGS["vit_b_ori"])
    with pytest.raises(ValueError, match="architecture"):
        StackedDecoders([a, b])
