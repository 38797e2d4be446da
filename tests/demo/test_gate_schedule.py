"""The report names the gate's warm-up and class weights as a deviation exactly when the
config uses them."""

from __future__ import annotations

from dataclasses import replace

from medmoe.demo.config import FULL
from medmoe.demo.report import gate_schedule


def test_no_bullet_for_the_papers_schedule():
    assert gate_schedule(replace(FULL, gate_warmup_epochs=0, gate_balance=False)) == []


def test_bullet_names_each_change_with_its_setting():
    [both] = gate_schedule(replace(FULL, gate_warmup_epochs=30, gate_balance=True))
    assert both.startswith("- **Gate schedule.** Before the click loop")
    assert "for 30 epochs" in both and "inverse group frequency" in both
    [warm] = gate_schedule(replace(FULL, gate_warmup_epochs=7, gate_balance=False))
    assert "for 7 epochs" in warm and "frequency" not in warm
    [bal] = gate_schedule(replace(FULL, gate_warmup_epochs=0, gate_balance=True))
    assert bal.startswith("- **Gate schedule.** The gate's cross-entropy") and "epochs" not in bal
