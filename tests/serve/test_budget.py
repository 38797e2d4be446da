"""The server's one memory budget and its upload slots."""

from __future__ import annotations

import pytest

from medmoe.serve.budget import Busy, MemoryBudget, OverBudget, UploadSlots


def test_reservations_add_up_and_a_key_replaces_its_own():
    budget = MemoryBudget(limit=100)
    budget.reserve("a", 40)
    budget.reserve("b", 60)
    assert budget.used == 100
    budget.reserve("a", 30)  # "a" again: 30 replaces 40
    assert budget.used == 90
    with pytest.raises(OverBudget, match="memory budget is full"):
        budget.reserve("c", 11)
    budget.release("b")
    budget.reserve("c", 11)
    assert budget.used == 41
    budget.release("nothing")  # releasing an unknown key is harmless


def test_evictors_free_room_before_a_refusal():
    budget = MemoryBudget(limit=100)
    cache = ["x", "y"]  # evictable entries of 40 bytes each

    def evict() -> bool:
        if not cache:
            return False
        budget.release(cache.pop(0))
        return True

    budget.add_evictor(evict)
    budget.reserve("x", 40)
    budget.reserve("y", 40)
    budget.reserve("s", 50)  # evicts "x" only: 40 + 50 fit
    assert cache == ["y"] and budget.used == 90
    with pytest.raises(OverBudget):
        budget.reserve("t", 60)  # "y" goes too, and 50 + 60 still does not fit
    assert cache == [] and budget.used == 50
    with pytest.raises(OverBudget, match="--memory-budget-mb"):
        budget.reserve("huge", 101)  # over the whole budget: refused without evicting


def test_upload_slots_refuse_rather_than_queue():
    slots = UploadSlots(limit=2)
    with slots.slot(), slots.slot(), pytest.raises(Busy, match="--max-uploads"), slots.slot():
        pass
    with slots.slot():  # both were given back, also after the refusal
        pass
