"""The non-forgetting guard: the decision on hand-made tables, and a deliberately bad expert
refused on real crops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medmoe.continual import GuardRow, decide
from medmoe.continual.guard import REPLAY, measure


def _row(task, kind, before, after, source="labels", n=3):
    return GuardRow(task=task, kind=kind, source=source, n=n, before=before, after=after)


@pytest.mark.parametrize(
    ("rows", "accepted", "reason"),
    [
        # 0.95 x 0.80 = 0.76: kept exactly is enough
        ([_row("liver", "old", 0.80, 0.76), _row("spleen", "new", 0.1, 0.7)], True, None),
        ([_row("liver", "old", 0.80, 0.759), _row("spleen", "new", 0.1, 0.7)], False,
         "liver (labels) fell from 0.800 to 0.759"),
        # an old task at 0 cannot fall; an old task that improves passes
        ([_row("other", "old", 0.0, 0.0, REPLAY), _row("liver", "old", 0.5, 0.9),
          _row("spleen", "new", 0.2, 0.3)], True, None),
        # the new task must improve (require_new_gain)
        ([_row("liver", "old", 0.8, 0.8), _row("spleen", "new", 0.4, 0.4)], False,
         "did not improve"),
        ([_row("liver", "old", 0.8, 0.8)], False, "no held-back crop of the new task"),
    ],
)  # fmt: skip
def test_decide(rows, accepted, reason):
    d = decide(rows, min_ratio=0.95, require_new_gain=True)
    assert d.accepted is accepted
    assert (reason is None and not d.reasons) or any(reason in r for r in d.reasons)
    assert ("accepted" if accepted else "refused") in d.table()
    assert d.to_dict()["rows"][0]["task"] == rows[0].task


def test_decide_min_ratio_and_gain_are_configurable():
    rows = [_row("liver", "old", 0.8, 0.6), _row("spleen", "new", 0.4, 0.4)]
    assert decide(rows, min_ratio=0.75, require_new_gain=False).accepted
    assert not decide(rows, min_ratio=0.76, require_new_gain=False).accepted


def _moe(base, experts, route_to: int, tau: float):
    """A MoE whose gate always gives class ``route_to`` probability ~1."""
    from medmoe.moe import Gate, GateConfig, MoESam3D

    gate = Gate(config=GateConfig(embed_dim=96, num_experts=len(experts)))
    last = gate.head[-1]
    torch.nn.init.zeros_(last.weight)
    with torch.no_grad():
        last.bias.zero_()
        last.bias[route_to] = 20.0
    return MoESam3D(base=base, experts=experts, gate=gate, tau=tau).eval()


def test_guard_refuses_a_deliberately_bad_expert():
    """The serving model answers with the general decoder (class 0); the new bundle routes
    everything to an expert whose weights are all zero (logits 0: empty masks). On crops
    labelled by the serving model's own masks (replay), the old task falls to Dice 0."""
    from medmoe.moe.validate import center_click, mask_of
    from medmoe.sam3d import build_mask_decoder, build_sam3d

    torch.manual_seed(0)
    base = build_sam3d("tiny").eval()
    good = build_mask_decoder(base.config)
    bad = build_mask_decoder(base.config)
    for p in bad.parameters():
        p.data.zero_()
    serving = _moe(base, {"liver": good}, route_to=0, tau=0.5)
    new = _moe(base, {"liver": good, "spleen": bad}, route_to=2, tau=0.5)
    items = []
    rng = np.random.default_rng(0)
    for _ in range(3):
        emb = torch.randn(96, 8, 8, 8)
        seed = np.zeros((128, 128, 128), dtype=bool)
        seed[rng.integers(40, 80), rng.integers(40, 80), rng.integers(40, 80)] = True
        with torch.no_grad():  # the serving model's own mask for a click: the replay label
            pts, lab = center_click(seed, torch.device("cpu"))
            out = serving.decode(emb[None], points=(pts, lab), tau=serving.tau)
        items.append({"embedding": emb, "label": mask_of(out.low_res_logits, 128),
                      "task": 0, "name": REPLAY})  # fmt: skip
    assert all(it["label"].any() for it in items)
    rows = measure(serving, new, items, names=["liver", "spleen"], new_task=2,
                   device=torch.device("cpu"))  # fmt: skip
    assert [(r.task, r.kind, r.source, r.n) for r in rows] == [("other", "old", REPLAY, 3)]
    assert rows[0].before > 0.3 and rows[0].after == 0.0
    decision = decide(rows, min_ratio=0.95, require_new_gain=True)
    assert not decision.accepted
    assert any("other (replay) fell" in r for r in decision.reasons)
