"""Which labels train which gate class, and which scans are held back."""

from __future__ import annotations

import pytest

from medmoe.continual import CaseSpec, TrainRequest, label_values, plan_job
from medmoe.continual.selection import OTHER, cases_from_index, split_ids, unlabelled
from medmoe.errors import InputError


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        # Slicer's Submit label: segment order + 1
        ({"label_info": [{"name": "spleen", "idx": 1}, {"name": "kidney", "idx": 2}]},
         {"spleen": 1, "kidney": 2}),
        # malformed entries, value 0, bools and a repeated name (first kept) are skipped
        ({"label_info": [{"name": "a", "idx": 0}, {"name": "b", "idx": True}, "c",
                         {"name": "d", "idx": 3}, {"name": "d", "idx": 4}, {"idx": 5}]},
         {"d": 3}),
        ({"label_names": {"liver": 1, "bad": "x"}}, {"liver": 1}),
        ({}, {}),
        ({"label_info": "spleen"}, {}),
    ],
)  # fmt: skip
def test_label_values(info, expected):
    assert label_values(info) == expected


def _case(i: str, **values) -> CaseSpec:
    return CaseSpec(i, f"/{i}.nii.gz", f"/{i}_l.nii.gz" if values else None, values)


def test_plan_adds_a_new_expert_last_and_maps_old_names():
    cases = [_case(c, spleen=1, liver=2) for c in "abcd"] + [_case("e", tumour=1), _case("f")]
    plan = plan_job(
        cases, TrainRequest("spleen", "spleen"), {"liver": ["liver", "hepar"], "lung": []},
        fraction=0.25, seed=0,
    )  # fmt: skip
    assert plan.experts == ("liver", "lung", "spleen") and plan.new_task == 3
    assert plan.old_experts == ("liver", "lung")
    assert [plan.task_of(n) for n in ("spleen", "liver", "hepar", "lung", "tumour")] == [
        3, 1, 1, 2, OTHER,
    ]  # fmt: skip
    # 4 scans with the label: round(0.25 * 4) = 1 held back; the lone "other" scan and the
    # unlabelled one train
    held = [c.image_id for c in plan.held]
    assert len(held) == 1 and held[0] in "abcd"
    assert {c.image_id for c in plan.train} == set("abcdef") - set(held)


def test_plan_update_keeps_the_experts_place():
    cases = [_case(c, liver=1) for c in "ab"]
    plan = plan_job(
        cases, TrainRequest("liver", "liver"), {"liver": ["liver"], "lung": ["lung"]},
        fraction=0.25, seed=0,
    )  # fmt: skip
    assert plan.experts == ("liver", "lung") and plan.new_task == 1
    assert plan.old_experts == ("lung",) and plan.task_of("lung") == 2
    assert len(plan.held) == 1 and len(plan.train) == 1


def test_plan_needs_the_label_on_two_scans():
    with pytest.raises(InputError, match="on 1 scan"):
        plan_job([_case("a", spleen=1), _case("b", liver=1)], TrainRequest("s", "spleen"),
                 {"liver": []}, fraction=0.25, seed=0)  # fmt: skip


@pytest.mark.parametrize(
    ("n", "fraction", "held"),
    [(0, 0.25, 0), (1, 0.9, 0), (2, 0.1, 1), (4, 0.25, 1), (10, 0.25, 2), (3, 0.9, 2)],
)
def test_split_ids_counts(n, fraction, held):
    ids = [f"id{i}" for i in range(n)]
    train, out = split_ids(ids, fraction, seed=1)
    assert len(out) == held and sorted(train + out) == sorted(ids) and not set(train) & set(out)
    assert split_ids(ids, fraction, seed=1) == (train, out)  # seeded


def test_cases_from_index_and_unlabelled():
    objects = {
        "b": {"image": {}, "labels": {"final": {"ext": ".nii.gz", "info": {
            "label_info": [{"name": "spleen", "idx": 1}]}}}},
        "a": {"image": {}, "labels": {"draft": {"ext": ".nii.gz", "info": {}}}},
    }  # fmt: skip
    cases = cases_from_index(
        objects, tag="final", image_path=lambda i: f"/img/{i}",
        label_path=lambda i, t: f"/lab/{t}/{i}",
    )  # fmt: skip
    assert cases == [
        CaseSpec("a", "/img/a"),
        CaseSpec("b", "/img/b", "/lab/final/b", {"spleen": 1}),
    ]
    assert unlabelled(objects, tag="final") == ["a"]
