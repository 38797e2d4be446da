"""The demo's click loop builds every prompt on the model's device and brings masks back.

The meta device stands in for a GPU: a tensor left on the CPU would show up in the decode
function's inputs (the same check as ``tests/train/test_device_discipline.py``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medmoe.demo.evaluate import Decoded, click_loop


@pytest.mark.parametrize("prompt", ["points", "box"])
def test_click_loop_builds_prompts_on_the_device(prompt):
    size = 16
    gt = np.zeros((size,) * 3, dtype=bool)
    gt[4:10, 5:11, 6:12] = True
    seen = []

    def decode(points, boxes, mask_input) -> Decoded:
        for t in ([*points] if points is not None else []) + [boxes]:
            if t is not None:
                seen.append(t.device.type)
        low = torch.full((1, 1, size // 4, size // 4, size // 4), -1.0)  # empty: more clicks
        return Decoded(low)

    traj = click_loop(
        decode, gt, prompt=prompt, first=np.array([6, 7, 8]), n_clicks=3,
        rng=np.random.default_rng(0), size=size, device="meta",
    )  # fmt: skip
    assert traj.mask.shape == gt.shape and not traj.mask.any()
    want = 1 if prompt == "box" else 2 * 3  # a box once; coordinates and labels at 3 clicks
    assert seen == ["meta"] * want


class _CudaLike:
    """A tensor as CUDA holds one, for ``prompt_key``: ``.numpy()`` refuses, as torch does for a
    device tensor, and ``.cpu()`` gives the values."""

    def __init__(self, t):
        self.t = t

    def detach(self):
        return self

    def contiguous(self):
        return self

    def cpu(self):
        return self.t.cpu()

    def numpy(self):
        raise TypeError("can't convert cuda:0 device type tensor to numpy")


def test_prompt_keys_of_device_tensors_equal_those_of_host_tensors():
    import torch

    from medmoe.demo.evaluate import prompt_key

    pts, labels = torch.tensor([[[3.0, 4.0, 5.0]]]), torch.tensor([[1]])
    logits = torch.randn(1, 1, 32, 32, 32)
    on_host = prompt_key((pts, labels), None, logits)
    assert prompt_key((_CudaLike(pts), _CudaLike(labels)), None, _CudaLike(logits)) == on_host
    assert prompt_key((pts, labels), None, logits + 1) != on_host
