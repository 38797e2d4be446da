"""Replay click placement and the versioned bundle folders."""

from __future__ import annotations

import numpy as np

from medmoe.continual.crops import replay_points
from medmoe.continual.versions import (
    clean_parts,
    current_version,
    next_version,
    versions,
    write_current,
)


def test_replay_points_lie_in_the_body_and_outside_the_structure():
    image = np.zeros((20, 20, 20), dtype=np.float32)
    image[5:15, 5:15, 5:15] = 1.0  # the body: 1000 of 8000 voxels, the median is 0
    avoid = np.zeros_like(image, dtype=bool)
    avoid[5:10] = True  # half the body
    pts = replay_points(image, avoid=avoid, n=30, rng=np.random.default_rng(0))
    assert pts.shape == (30, 3) and len({tuple(p) for p in pts}) == 30  # no repeats
    assert all(image[tuple(p)] == 1.0 and not avoid[tuple(p)] for p in pts)
    again = replay_points(image, avoid=avoid, n=30, rng=np.random.default_rng(0))
    assert np.array_equal(pts, again)
    # fewer candidates than asked: every one, once
    everywhere = np.ones_like(avoid)
    assert len(replay_points(image, avoid=everywhere, n=5, rng=np.random.default_rng(0))) == 0
    small = np.zeros_like(avoid)
    small[10, 10, 10:13] = True
    few = replay_points(image, avoid=~small, n=10, rng=np.random.default_rng(0))
    assert sorted(map(tuple, few)) == [(10, 10, 10), (10, 10, 11), (10, 10, 12)]
    assert replay_points(image, avoid=None, n=0, rng=np.random.default_rng(0)).shape == (0, 3)


def _bundle(path):
    path.mkdir(parents=True)
    (path / "moe.json").write_text("{}")
    return path


def test_versions_number_past_partial_folders_and_current_points_to_a_complete_one(tmp_path):
    assert next_version(tmp_path / "none").name == "v0001" and versions(tmp_path / "none") == []
    _bundle(tmp_path / "v0001")
    (tmp_path / "v0002.part").mkdir()
    assert next_version(tmp_path).name == "v0003"  # a .part number is never reused
    assert clean_parts(tmp_path) == ["v0002.part"] and not (tmp_path / "v0002.part").exists()
    _bundle(tmp_path / "v0010")
    assert [p.name for p in versions(tmp_path)] == ["v0001", "v0010"]  # numeric order
    assert current_version(tmp_path) is None
    write_current(tmp_path, tmp_path / "v0010")
    assert current_version(tmp_path) == tmp_path / "v0010"
    (tmp_path / "v0010" / "moe.json").unlink()  # incomplete: not served
    assert current_version(tmp_path) is None
