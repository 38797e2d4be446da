"""``medmoe pretrain``: the structures it trains on, and a recipe that repeats exactly."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

pytest.importorskip("torch")
from medmoe.demo.config import GROUPS
from medmoe.pretrain.data import BrainCrops
from medmoe.pretrain.structures import DEMO_GROUP_VALUES, load_structures
from medmoe.pretrain.train import PretrainConfig, pretrain
from medmoe.train.task import Runtime


def test_the_overlap_rule_uses_the_demo_groups_values():
    assert sorted(DEMO_GROUP_VALUES) == sorted(v for g in GROUPS for v in g.values)


def test_structures_leave_out_the_demo_groups_under_every_name():
    structures, dropped = load_structures(["neuromorphometrics", "aal"])
    neuro = {s.value for s in structures if s.atlas == "neuromorphometrics"}
    assert not neuro & set(DEMO_GROUP_VALUES)
    assert 35 in neuro and 59 in neuro  # brainstem and a thalamus stay: the general categories
    aal = [s.name for s in structures if s.atlas == "aal"]
    for word in ("Precentral", "Frontal_Sup", "Cerebelum", "Amygdala", "Pallidum", "Vermis"):
        assert not [n for n in aal if word in n], word
    assert dropped["name"] >= 10 + 2 + 2 + 2 + 26  # neuromorphometrics + AAL's spellings
    assert all(s.mask.any() and s.affine.shape == (4, 4) for s in structures)


def test_training_crops_hold_their_structure_and_repeat_per_epoch():
    structures, _ = load_structures(["neuromorphometrics"])
    from medmoe.data.io import load_volume
    from medmoe.pretrain.structures import template_path

    ds = BrainCrops(t1=load_volume(template_path()), structures=structures[:2])
    a = ds[0]
    assert a["image"].shape == (128, 128, 128) and a["label"].sum() >= 27
    assert np.array_equal(ds[0]["label"], a["label"])  # same (seed, epoch, index): same crop
    ds.set_epoch(1)
    assert not np.array_equal(ds[0]["label"], a["label"])  # a new epoch draws new crops


def _run(out):
    cfg = PretrainConfig(epochs=1, atlases=("neuromorphometrics",), max_structures=2,
                         val_per_structure=1, warmup_steps=1)  # fmt: skip
    history = pretrain(cfg, out=out, device="cpu", progress=False, runtime=Runtime(workers=0))
    digest = hashlib.sha256((out / "last.safetensors").read_bytes()).hexdigest()
    return [h["loss"] for h in history], digest


def test_the_recipe_repeats_its_loss_trajectory_and_weights(tmp_path):
    losses_a, sha_a = _run(tmp_path / "a")
    losses_b, sha_b = _run(tmp_path / "b")
    assert losses_a == losses_b and sha_a == sha_b
    log = [json.loads(s) for s in (tmp_path / "a" / "checkpoints" / "metrics.jsonl").open()]
    assert log[0]["skipped"] == 0 and {"val_dice_1", "val_dice_6", "val_dice_box"} <= set(log[0])
    assert (tmp_path / "a" / "best.safetensors").is_file()
