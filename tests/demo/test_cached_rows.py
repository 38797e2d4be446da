"""Evaluation rows cached by a run before the Aft_weight rows took the library's name."""

from __future__ import annotations

from medmoe.demo.run import _current_method_names
from medmoe.eval.moe_methods import WEIGHTINGS


def test_old_aft_rows_take_the_library_name():
    rows = [{"method": m} for m in ("aft|0.5", "oracle|aft", "s_top|0.3", "FT:2", "MoE")]
    got = [r["method"] for r in _current_method_names(rows)]
    assert got == ["logit-softmax|0.5", "oracle|logit-softmax", "s_top|0.3", "FT:2", "MoE"]
    assert "logit-softmax" in WEIGHTINGS  # the name the tables look the rows up by
