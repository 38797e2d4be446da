"""The decoder's GEMM upscaling equals the published ConvTranspose3d ``output_upscaling``."""

from __future__ import annotations

import pytest
import torch
from tests.sam3d.helpers import randomize_

from medmoe.sam3d import SAM3D_CONFIGS, build_mask_decoder


@pytest.mark.parametrize(("dtype", "rtol"), [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("masks", [1, 3])
def test_gemm_upscaling_equals_conv_transpose(dtype, rtol, masks):
    dec = randomize_(build_mask_decoder(SAM3D_CONFIGS["tiny"]), std=0.2).to(dtype)
    c, n = dec.transformer_dim, 4
    gen = torch.Generator().manual_seed(3)
    src = torch.randn(2, n**3, c, generator=gen, dtype=dtype)
    hyper = torch.randn(2, masks, c // 8, generator=gen, dtype=dtype)
    with torch.no_grad():
        got = dec.upscaled_masks(src, hyper, (n, n, n))
        grid = src.transpose(1, 2).reshape(2, c, n, n, n)
        up = dec.output_upscaling(grid)  # the published modules, as nn.Sequential
        want = (hyper @ up.flatten(2)).view(2, masks, 4 * n, 4 * n, 4 * n)
    assert got.shape == want.shape == (2, masks, 16, 16, 16)
    assert ((got - want).abs().max() / want.abs().max()) <= rtol


def test_gradients_equal_conv_transpose():
    """Training goes through the GEMM form too: its gradients are the published modules'."""
    dec = randomize_(build_mask_decoder(SAM3D_CONFIGS["tiny"]), std=0.2).double()
    c, n = dec.transformer_dim, 4
    gen = torch.Generator().manual_seed(5)
    src = torch.randn(1, n**3, c, generator=gen, dtype=torch.float64)
    hyper = torch.randn(1, 1, c // 8, generator=gen, dtype=torch.float64)
    target = torch.randn(1, 1, 16, 16, 16, generator=gen, dtype=torch.float64)

    def grads(fn):
        dec.zero_grad()
        (fn() * target).sum().backward()
        return [p.grad.clone() for p in dec.output_upscaling.parameters()]

    got = grads(lambda: dec.upscaled_masks(src, hyper, (n, n, n)))
    grid = src.transpose(1, 2).reshape(1, c, n, n, n)
    want = grads(lambda: (hyper @ dec.output_upscaling(grid).flatten(2)).view(1, 1, 16, 16, 16))
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)
