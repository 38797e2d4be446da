"""The demo's statistics and pass/miss lines on hand-made rows (expected values by hand)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medmoe.demo.stats import (
    EvalRow,
    GroupCheck,
    aggregate,
    check_lines,
    crop_scores,
    paired_bootstrap,
    per_crop,
    recovered,
    routing,
)


def _row(crop, task, method, dice, *, gate=(0, 0), expert=(0, 0), prompt="points"):
    return EvalRow(
        subject="B",
        crop=crop,
        name=f"s{crop}",
        task=task,
        method=method,
        prompt=prompt,
        first="centre",
        dice=dice,
        gate=gate,
        expert=expert,
    )


# crop 0, 1: other; crop 2: group 1; crops 3, 4: group 2 (two experts)
ROWS = [
    _row(0, 0, "Baseline", 0.8),
    _row(0, 0, "FT:1", 0.2),
    _row(0, 0, "FT:2", 0.4),
    _row(0, 0, "MoE", 0.8, gate=(0, 1), expert=(0, 1)),
    _row(1, 0, "Baseline", 0.6),
    _row(1, 0, "FT:1", 0.3),
    _row(1, 0, "FT:2", 0.5),
    _row(1, 0, "MoE", 0.5),
    _row(2, 1, "Baseline", 0.1),
    _row(2, 1, "FT:1", 0.7),
    _row(2, 1, "MoE", 0.6, gate=(1, 1), expert=(1, 1)),
    _row(3, 2, "Baseline", 0.0),
    _row(3, 2, "FT:2", 0.5),
    _row(3, 2, "MoE", 0.5, gate=(2, 2), expert=(2, 2)),
    _row(4, 2, "Baseline", 0.2),
    _row(4, 2, "FT:2", 0.9),
    _row(4, 2, "MoE", 0.2, gate=(0, 1), expert=(0, 1)),
]


def test_table1_cells_by_hand():
    s = crop_scores(ROWS, subject="B", prompt="points")
    assert aggregate(per_crop(s, "Baseline"), "other") == pytest.approx(0.7)  # (0.8 + 0.6) / 2
    # FT on an other crop is the mean over the experts: (0.3 + 0.4) / 2
    assert aggregate(per_crop(s, "FT"), "other") == pytest.approx(0.35)
    # finetuned = mean of group means: group 1 0.7, group 2 (0.5 + 0.9) / 2 = 0.7
    assert aggregate(per_crop(s, "FT"), "finetuned") == pytest.approx(0.7)
    # MoE: group 1 0.6, group 2 0.35 -> 0.475
    assert aggregate(per_crop(s, "MoE"), "finetuned") == pytest.approx(0.475)
    assert aggregate(per_crop(s, "Upperbound"), "other") == pytest.approx(0.7)
    assert aggregate(per_crop(s, "Upperbound"), 2) == pytest.approx(0.7)
    assert math.isnan(aggregate(per_crop(s, "MoE"), 3))


def test_bootstrap_is_paired_and_stratified():
    s = crop_scores(ROWS, subject="B", prompt="points")
    moe, base = per_crop(s, "MoE"), per_crop(s, "Baseline")
    # group 1 has one crop: every resample gives the same difference, 0.5
    assert paired_bootstrap(moe, base, 1, n=200) == pytest.approx((0.5, 0.5, 0.5))
    est, lo, hi = paired_bootstrap(moe, base, "other", n=2000)
    assert est == pytest.approx(-0.05)  # (0.0 + -0.1) / 2
    assert -0.1 <= lo <= est <= hi <= 0.0
    # finetuned: group 1 diff 0.5, group 2 diffs {0.5, 0.0}: estimate (0.5 + 0.25) / 2
    est, lo, hi = paired_bootstrap(moe, base, "finetuned", n=2000)
    assert est == pytest.approx(0.375)
    assert lo == pytest.approx(0.25) and hi == pytest.approx(0.5)


def test_routing_at_first_and_last_click():
    first = routing(ROWS, subject="B", prompt="points", first="centre", step=0, groups=2)
    last = routing(ROWS, subject="B", prompt="points", first="centre", step=1, groups=2)
    # click 1: other crops -> gate 0 twice; crop 2 -> 1; crop 3 -> 2; crop 4 -> 0
    assert first.confusion.tolist() == [[2, 0, 0], [0, 1, 0], [1, 0, 1]]
    assert first.fires_on_other == 0.0 and first.missed_right == pytest.approx(1 / 3)
    # last click: crop 0 fires expert 1 (on other), crop 4 uses expert 1 (not its own, 2)
    assert last.fires_on_other == 0.5 and last.missed_right == pytest.approx(1 / 3)
    assert last.confusion.tolist() == [[1, 1, 0], [0, 1, 0], [0, 1, 1]]


GOOD = dict(
    label="points",
    baseline=0.70,
    ft=0.40,
    moe=0.69,
    ci_other=(-0.02, 0.01),
    groups=[
        GroupCheck("a", 0.1, 0.7, 0.6, (0.3, 0.7)),
        GroupCheck("b", 0.2, 0.6, 0.5, (0.1, 0.4)),
        GroupCheck("c", 0.0, 0.5, 0.4, (0.2, 0.5)),
        GroupCheck("d", 0.3, 0.3, 0.3, (-0.1, 0.1)),  # FT no better than Baseline: n/a
    ],
    tau_spread={"s_top": 0.05},
)


def test_checks_pass_on_good_rows():
    lines = check_lines(**GOOD)
    assert [line.rsplit(": ", 1)[1] for line in lines[:3]] == ["PASS"] * 3
    assert "on 3 of 4 groups" in lines[2] and "d n/a" in lines[2]
    assert "informative" in lines[3]


@pytest.mark.parametrize(
    ("change", "line"),
    [
        ({"ft": 0.65}, 0),  # 0.65 > 0.70 - 0.10: no forgetting to show
        ({"moe": 0.66}, 1),  # 0.66 < 0.95 x 0.70 = 0.665
        ({"ci_other": (-0.031, 0.01)}, 1),  # lower bound below -0.03
        ({"groups": GOOD["groups"][:2] + [GroupCheck("c", 0.0, 0.5, 0.2, (0.1, 0.3))]}, 2),
        ({"groups": GOOD["groups"][:2] + [GroupCheck("c", 0.0, 0.5, 0.4, (-0.01, 0.5))]}, 2),
    ],
)
def test_checks_say_miss(change, line):
    lines = check_lines(**{**GOOD, **change})
    assert lines[line].endswith(": MISS"), lines[line]
    assert all(x.endswith("PASS") for i, x in enumerate(lines[:3]) if i != line)


def test_saturated_gate_note():
    lines = check_lines(**{**GOOD, "tau_spread": {"s_top": 0.004, "avg": 0.2}})
    assert "at most 0.004" in lines[3] and "saturated" in lines[3] and "inconclusive" in lines[3]
    assert "informative" in lines[4]


def test_recovered_gain_by_hand():
    assert recovered(GroupCheck("x", 0.2, 0.6, 0.5, (0, 0))) == pytest.approx(0.75)
    assert math.isnan(recovered(GroupCheck("x", 0.6, 0.6, 0.5, (0, 0))))
    assert np.isfinite(recovered(GroupCheck("x", 0.0, 0.1, 0.0, (0, 0))))


def test_rows_round_trip_through_their_json_form():
    row = _row(3, 2, "MoE", 0.5, gate=(2, 1), expert=(2, 0))
    d = row.to_dict()
    assert d["gate"] == [2, 1] and "nsd" not in d  # the eval_<subject>.json form
    assert EvalRow.from_dict(d) == row
    with_nsd = EvalRow.from_dict({**d, "nsd": 0.25})
    assert with_nsd.nsd == 0.25 and with_nsd.to_dict()["nsd"] == 0.25


def test_unknown_row_keys_are_refused():
    from medmoe.errors import InputError

    with pytest.raises(InputError, match="unknown evaluation row keys: dicee"):
        EvalRow.from_dict({**_row(0, 0, "Baseline", 0.8).to_dict(), "dicee": 1.0})


def test_nsd_scores_skip_rows_without_nsd():
    rows = [
        _row(0, 0, "Baseline", 0.8),
        EvalRow.from_dict({**_row(1, 0, "MoE", 0.5).to_dict(), "nsd": 0.4}),
    ]
    assert crop_scores(rows, subject="B", prompt="points", metric="nsd") == {
        1: {"task": 0, "MoE": 0.4}
    }
