"""Sam3DPredictor: one encoder call per image, prompts validated, outputs consistent."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tests.sam3d.helpers import randomize_

from medmoe.errors import InputError, StateError
from medmoe.sam3d import Sam3DPredictor, build_sam3d


@pytest.fixture(scope="module")
def predictor():
    return Sam3DPredictor(randomize_(build_sam3d("tiny"), std=0.05))


def test_encoder_runs_once_for_many_predicts(predictor):
    calls = []
    handle = predictor.model.image_encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        predictor.set_image(torch.randn(128, 128, 128))
        prev = None
        for i in range(5):
            out = predictor.predict(points=[[60 + i, 64, 64]], labels=[1], mask_input=prev)
            prev = out.low_res_logits
        predictor.predict(box=[10, 10, 10, 90, 90, 90])
    finally:
        handle.remove()
    assert len(calls) == 1


def test_outputs_are_consistent(predictor):
    vol = torch.randn(1, 1, 128, 128, 128)
    predictor.set_image(vol)
    out = predictor.predict(points=[[64, 64, 64], [20, 30, 40]], labels=[1, 0])
    assert out.low_res_logits.shape == (1, 1, 32, 32, 32)
    assert out.logits.shape == (1, 1, 128, 128, 128) and out.mask.dtype == torch.bool
    up = F.interpolate(out.low_res_logits, size=(128,) * 3, mode="trilinear", align_corners=False)
    torch.testing.assert_close(out.logits, up)
    assert torch.equal(out.mask, out.logits > 0)
    # The same call through the model end to end gives the same logits.
    with torch.no_grad():
        direct = predictor.model(
            vol,
            points=(torch.tensor([[[64.0, 64, 64], [20, 30, 40]]]), torch.tensor([[1, 0]])),
        )
    torch.testing.assert_close(out.low_res_logits, direct, rtol=1e-5, atol=1e-5)


def test_predict_before_set_image():
    p = Sam3DPredictor(build_sam3d("tiny"))
    with pytest.raises(StateError, match="set_image"):
        p.predict(points=[[1, 2, 3]], labels=[1])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"points": [[1, 2]], "labels": [1]}, "shape"),
        ({"points": [[1, 2, 3]], "labels": [1, 0]}, "labels must have shape"),
        ({"points": [[1, 2, 3]], "labels": [2]}, "1 .positive. or 0"),
        ({"points": [[1, 2, 300]], "labels": [1]}, "inside"),
        ({"points": [[1, 2, 3]]}, "together"),
        ({"box": [50, 10, 10, 40, 90, 90]}, "x1 <= x2"),
        ({"box": [1, 2, 3]}, "shape"),
        ({"mask_input": torch.zeros(1, 1, 16, 16, 16)}, "shape"),
        ({"points": [[float("nan"), 2, 3]], "labels": [1]}, "NaN"),
    ],
)
def test_bad_prompts(predictor, kwargs, message):
    predictor.set_image(torch.zeros(128, 128, 128))
    with pytest.raises(InputError, match=message):
        predictor.predict(**kwargs)


def test_bad_volumes(predictor):
    with pytest.raises(InputError, match="shape"):
        predictor.set_image(torch.zeros(64, 64, 64))
    with pytest.raises(InputError, match="float"):
        predictor.set_image(torch.zeros(128, 128, 128, dtype=torch.int16))


def test_box_needs_a_box_capable_model():
    p = Sam3DPredictor(build_sam3d("vit_b_ori"))
    p._features = torch.zeros(1, 384, 8, 8, 8)  # skip the encoder: only the prompt check matters
    p._image_pe = p.model.prompt_encoder.get_dense_pe()
    with pytest.raises(InputError, match="no box embeddings"):
        p.predict(box=[1, 1, 1, 5, 5, 5])


def test_embed_batch_equals_one_by_one(predictor):
    vols = torch.randn(3, 128, 128, 128, generator=torch.Generator().manual_seed(4))
    batched = predictor.embed_batch(vols, batch_size=2)  # a batch of 2, then one of 1
    assert batched.shape == (3, 96, 8, 8, 8)
    for i in range(3):
        predictor.set_image(vols[i])
        ref = predictor.features
        assert ((batched[i : i + 1] - ref).abs().max() / ref.abs().max()) <= 1e-5
    predictor.set_embedding(batched[1:2])
    assert torch.equal(predictor.features, batched[1:2])
    with pytest.raises(InputError, match="shape"):
        predictor.embed_batch(torch.zeros(2, 64, 64, 64))
