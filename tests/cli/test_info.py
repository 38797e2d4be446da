"""``medmoe info`` and the command line's error contract."""

from __future__ import annotations

import subprocess
import sys

from medmoe.cli.main import main


def test_info_lists_registered_models(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for name in ("vit_b_ori", "vit_b_ori_box", "tiny"):
        assert f"  {name} " in out


def test_unknown_subcommand_exits_2_without_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "medmoe", "no-such-command"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "invalid choice" in proc.stderr
