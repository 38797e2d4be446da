from __future__ import annotations

import math

import pytest
import torch

from medmoe.errors import InputError
from medmoe.moe import expert_weight, fuse, logit_softmax, route, select_masks
from medmoe.moe.selector import WEIGHTING_ALIASES, WEIGHTINGS, weighting_name


def test_route_picks_the_best_expert_ignoring_index_0():
    probs = torch.tensor([[0.7, 0.1, 0.2], [0.1, 0.6, 0.3], [0.2, 0.4, 0.4]])
    r = route(probs, tau=0.5)
    assert r.expert.tolist() == [2, 1, 1]  # ties -> the first expert
    assert torch.allclose(r.s_top, torch.tensor([0.2, 0.6, 0.4]))
    assert r.use_expert.tolist() == [False, True, False]


@pytest.mark.parametrize("m", list(range(1, 16)))
def test_route_for_m_experts(m):
    g = torch.Generator().manual_seed(m)
    probs = torch.rand(6, m + 1, generator=g).softmax(-1)
    r = route(probs, tau=0.0)
    for b in range(6):
        best = max(range(1, m + 1), key=lambda i: probs[b, i].item())
        assert r.expert[b].item() == best and r.s_top[b].item() == probs[b, best].item()


def test_selector_branches_and_tau_edge():
    g = torch.full((3, 1, 2, 2, 2), 2.0)
    e = torch.full((3, 1, 2, 2, 2), -4.0)
    s = torch.tensor([0.3, 0.5, 0.8])
    out = select_masks(g, e, s, tau=0.5)
    assert torch.equal(out[0], g[0])  # below tau: general
    assert torch.equal(out[1], g[1])  # exactly tau: general (strict inequality)
    assert torch.allclose(out[2], torch.full_like(g[2], 0.2 * 2.0 + 0.8 * -4.0))  # -2.8
    avg = select_masks(g, e, s, tau=0.5, weighting="avg")
    assert torch.allclose(avg[2], torch.full_like(g[2], -1.0)) and torch.equal(avg[0], g[0])
    sm = select_masks(g, e, s, tau=0.5, weighting="logit-softmax")
    # softmax(2, -4) = (e^6, 1) / (e^6 + 1) = (0.997527, 0.002473): 2 * 0.997527 - 4 * 0.002473
    assert torch.allclose(sm[2], torch.full_like(g[2], 1.985164), atol=1e-5)
    assert torch.equal(sm[0], g[0]) and torch.equal(sm[1], g[1])


def test_weights_and_errors():
    s = torch.tensor([0.0, 1.0])
    assert torch.equal(expert_weight(s), s)
    assert torch.equal(expert_weight(s, weighting="avg"), torch.full((2,), 0.5))
    with pytest.raises(InputError, match="weighting"):
        expert_weight(s, weighting="max")
    with pytest.raises(InputError, match="each voxel"):
        expert_weight(s, weighting="logit-softmax")
    with pytest.raises(InputError, match="m \\+ 1"):
        route(torch.ones(2, 1))


def test_logit_softmax_on_two_voxels_by_hand():
    """Aft_weight (``logit-softmax``), a voxel-wise softmax over (l_g, l_e), fused p_g l_g + p_e l_e.

    Voxel 1: l_g = 0, l_e = ln 3: p = (1/4, 3/4), fused 3/4 ln 3 = 0.823959.
    Voxel 2: l_g = 1, l_e = 1: p = (1/2, 1/2), fused 1 (equal logits stay).
    s_top does not enter: 0.6 and 0.9 give the same result."""
    general = torch.tensor([[0.0, 1.0]])
    expert = torch.tensor([[math.log(3.0), 1.0]])
    want = torch.tensor([[0.75 * math.log(3.0), 1.0]])
    for s in (0.6, 0.9):
        got = fuse(general, expert, torch.tensor([s]), weighting="logit-softmax")
        assert torch.allclose(got, want, atol=1e-6)
    assert torch.allclose(logit_softmax(general, expert), want, atol=1e-6)
    # fires above tau only; the old name is an alias of the same function
    got = select_masks(general, expert, torch.tensor([0.6]), tau=0.5, weighting="softmax")
    assert torch.allclose(got, want, atol=1e-6)
    assert torch.equal(
        select_masks(general, expert, torch.tensor([0.4]), tau=0.5, weighting="logit-softmax"),
        general,
    )


def test_weighting_names():
    assert WEIGHTINGS == ("s_top", "avg", "logit-softmax")
    assert weighting_name("softmax") == "logit-softmax" and weighting_name("avg") == "avg"
    with pytest.raises(InputError, match="unknown weighting 'aft'"):
        weighting_name("aft")


def test_the_cli_offers_the_library_weightings():
    from medmoe.cli import moe as cli_moe
    from medmoe.cli.main import build_parser

    assert cli_moe.WEIGHTINGS == WEIGHTINGS and cli_moe.WEIGHTING_ALIASES == WEIGHTING_ALIASES
    base = ["moe", "train", "--checkpoint", "c", "--expert", "e", "--dataset", "d", "--out", "o"]
    parser = build_parser()
    for given, want in (("logit-softmax", "logit-softmax"), ("softmax", "logit-softmax")):
        assert parser.parse_args([*base, "--weighting", given]).weighting == want
    with pytest.raises(SystemExit) as err:
        parser.parse_args([*base, "--weighting", "sigmoid"])
    assert err.value.code == 2


def test_demo_library_and_model_fuse_with_one_function():
    """The demo's Table 2 rows, the evaluator and MoESam3D (what --weighting sets) share fuse."""
    from medmoe.demo import evaluate as demo_evaluate
    from medmoe.eval import moe_methods
    from medmoe.moe import model, selector

    assert demo_evaluate.fuse is moe_methods.fuse is selector.fuse
    assert demo_evaluate.WEIGHTINGS == moe_methods.WEIGHTINGS == WEIGHTINGS
    assert model.select_masks is selector.select_masks


def test_the_demo_variant_equals_the_model_with_logit_softmax():
    """Equal outputs: the evaluator's Aft_weight row (what the demo reports) and MoESam3D with
    ``weighting="logit-softmax"`` (what ``medmoe moe train --weighting`` builds), on one prompt."""
    from medmoe.eval.moe_methods import Methods
    from medmoe.moe import Gate, GateConfig, MoESam3D
    from medmoe.moe.interactive import point_prompt
    from medmoe.sam3d import build_mask_decoder, build_sam3d

    torch.manual_seed(3)
    base = build_sam3d("tiny")
    cfg = base.config
    moe = MoESam3D(
        base=base,
        experts={"x": build_mask_decoder(cfg)},
        gate=Gate(config=GateConfig(embed_dim=cfg.prompt_dim, num_experts=1)),
        tau=0.0,
        weighting="softmax",  # the old name: read as logit-softmax
    ).eval()
    assert moe.weighting == "logit-softmax"
    emb = torch.randn(1, cfg.prompt_dim, *(cfg.grid_size,) * 3)
    points = point_prompt([torch.tensor([60, 64, 70]).numpy()], [1], "cpu")
    with torch.inference_mode():
        want = moe.decode(emb, points=points).low_res_logits
        methods = Methods(moe=moe, embedding=emb, task=1)
        got = methods.variant(weighting="logit-softmax", tau=0.0)(points, None, None)
    assert got.expert == 1 and torch.equal(got.low, want)
