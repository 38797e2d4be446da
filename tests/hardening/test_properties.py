"""Property-based tests (hypothesis) of the prompt and geometry functions."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from medmoe.data import voxel_to_world, world_to_voxel
from medmoe.data.prompts import check_box, check_points
from medmoe.errors import InputError
from medmoe.eval.clicks import box_from_mask, first_click, next_click
from medmoe.moe.selector import select_masks

finite = st.floats(-200, 200, allow_nan=False)
spacing = st.floats(0.2, 6.0)


@st.composite
def affines(draw):
    """Random orientation (axis permutation and flips), spacing and origin."""
    perm = draw(st.permutations([0, 1, 2]))
    flips = draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=3, max_size=3))
    a = np.zeros((4, 4))
    for col, row in enumerate(perm):
        a[row, col] = flips[col] * draw(spacing)
    a[:3, 3] = [draw(finite) for _ in range(3)]
    a[3, 3] = 1
    return a


@settings(max_examples=60, deadline=None)
@given(affines(), st.lists(st.tuples(finite, finite, finite), min_size=1, max_size=5))
def test_world_voxel_round_trip(affine, pts):
    pts = np.array(pts)
    assert np.allclose(world_to_voxel(voxel_to_world(pts, affine), affine), pts, atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(
    st.tuples(st.integers(1, 50), st.integers(1, 50), st.integers(1, 50)),
    st.lists(st.tuples(finite, finite, finite), min_size=1, max_size=4),
)
def test_check_points_accepts_exactly_the_points_inside(shape, pts):
    pts = np.array(pts)
    inside = ((pts >= -0.5) & (pts <= np.array(shape) - 0.5)).all()
    try:
        check_points(pts, shape)
        assert inside
    except InputError:
        assert not inside


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 19), min_size=6, max_size=6))
def test_check_box_refuses_inverted_boxes(b):
    box = np.array(b, dtype=float)
    try:
        check_box(box, (20, 20, 20))
        assert (box[:3] <= box[3:]).all()
    except InputError:
        assert (box[:3] > box[3:]).any()


@st.composite
def masks(draw, shape=(10, 9, 8)):
    bits = draw(st.lists(st.booleans(), min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
    return np.array(bits).reshape(shape)


@settings(max_examples=40, deadline=None)
@given(masks(), masks(), st.sampled_from(["random", "center"]), st.integers(0, 2**31 - 1))
def test_next_click_lies_on_the_error_with_the_right_label(pred, gt, method, seed):
    click = next_click(pred, gt, method=method, rng=np.random.default_rng(seed))
    if np.array_equal(pred, gt):
        assert click is None
        return
    p = tuple(click.point)
    assert pred[p] != gt[p]
    assert click.label == int(gt[p])


@settings(max_examples=40, deadline=None)
@given(masks(), st.integers(0, 3), st.integers(0, 2**31 - 1))
def test_box_contains_the_mask_and_first_click_is_inside(gt, jitter, seed):
    if not gt.any():
        return
    box = box_from_mask(gt)
    idx = np.argwhere(gt)
    assert (idx.min(0) >= box[:3]).all() and (idx.max(0) <= box[3:]).all()
    jittered = box_from_mask(gt, jitter=jitter, rng=np.random.default_rng(seed))
    assert (np.abs(jittered - box) <= jitter).all() and (jittered[:3] <= jittered[3:]).all()
    assert gt[tuple(first_click(gt).point)]


@settings(max_examples=60, deadline=None)
@given(st.floats(0, 1), st.floats(0, 1), st.sampled_from(["s_top", "avg", "softmax"]))
def test_selected_logits_lie_between_general_and_expert(s_top, tau, weighting):
    g, e = torch.full((1, 1, 2, 2, 2), -3.0), torch.full((1, 1, 2, 2, 2), 5.0)
    out = select_masks(g, e, torch.tensor([s_top]), tau=tau, weighting=weighting)
    assert bool(((out >= -3.0 - 1e-6) & (out <= 5.0 + 1e-6)).all())
    if s_top <= tau:
        assert torch.equal(out, g)
