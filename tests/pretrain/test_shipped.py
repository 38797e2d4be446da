"""The shipped ``medmoe-brain``: its file, its registry entry and its card agree, it loads
strictly, and every option that takes a SAM-Med3D checkpoint takes its name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from medmoe.cli.main import main
from medmoe.errors import CheckpointError
from medmoe.sam3d import load_sam3d_checkpoint
from medmoe.sam3d.pretrained import PRETRAINED, WEIGHTS_DIR, resolve_checkpoint
from medmoe.sam3d.registry import load_pretrained
from medmoe.utils.files import file_sha256

ROOT = Path(__file__).resolve().parents[2]
ENTRY = PRETRAINED["medmoe-brain"]


def test_sha256_of_the_file_the_registry_and_the_card_agree():
    path = WEIGHTS_DIR / ENTRY.file
    assert path.stat().st_size <= 25 * 2**20
    sha = file_sha256(path)
    assert sha == ENTRY.sha256
    card = (ROOT / "docs" / "models" / "medmoe-brain.md").read_text()
    assert re.findall(r"SHA-256 `([0-9a-f]{64})`", card) == [sha]


def test_load_pretrained_is_strict_and_complete():
    model = load_pretrained("medmoe-brain")
    state = load_sam3d_checkpoint(WEIGHTS_DIR / ENTRY.file)
    assert set(state) == set(model.state_dict())
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert not model.training


def test_the_name_resolves_wherever_a_checkpoint_is_read(tmp_path, monkeypatch):
    assert resolve_checkpoint("medmoe-brain") == WEIGHTS_DIR / ENTRY.file
    monkeypatch.chdir(tmp_path)
    (tmp_path / "medmoe-brain").write_bytes(b"x")  # a file of that name wins over the name
    assert resolve_checkpoint("medmoe-brain") == Path("medmoe-brain")
    with pytest.raises(CheckpointError):
        load_sam3d_checkpoint("medmoe-brain")


def test_info_lists_it_with_its_sha256(capsys):
    assert main(["info"]) == 0
    assert f"medmoe-brain   tiny, sha256 {ENTRY.sha256}" in capsys.readouterr().out
