"""Shared test settings: 2 threads (the CI machine has 2 cores), deterministic seeds."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
