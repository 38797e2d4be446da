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


class _FakeTorch:
    """Just the attributes ``torch_lines`` reads, for a CUDA build with two GPUs or none."""

    def __init__(self, cuda, gpus):
        props = [type("P", (), {"name": n, "total_memory": m * 2**30}) for n, m in gpus]
        self.version = type("V", (), {"cuda": cuda})
        cudnn = type("C", (), {"is_available": staticmethod(lambda: True),
                               "version": staticmethod(lambda: 91002)})  # fmt: skip
        self.backends = type("B", (), {"cudnn": cudnn})
        self.cuda = type("Cu", (), {"device_count": staticmethod(lambda: len(props)),
                                    "get_device_properties": staticmethod(lambda i: props[i])})  # fmt: skip


def test_info_names_the_build_and_every_device():
    from medmoe.cli.info import torch_lines

    two = _FakeTorch("12.4", [("NVIDIA H100", 80), ("NVIDIA H100", 80)])
    assert torch_lines(two) == [
        "build    CUDA 12.4, cuDNN 91002",
        "devices  cuda:0 NVIDIA H100 (80 GiB)",
        "         cuda:1 NVIDIA H100 (80 GiB)",
    ]
    assert (
        torch_lines(_FakeTorch("12.4", []))[1] == "devices  cpu (CUDA build, but no GPU is visible)"
    )
    assert torch_lines(_FakeTorch(None, [])) == ["build    cpu", "devices  cpu"]


def test_info_prints_the_build(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "build    " in out and "devices  " in out


def test_the_command_tears_down_a_process_group_it_opened(tmp_path, monkeypatch):
    """A subcommand that opened a (gloo, one-process) group leaves none behind at exit."""
    import argparse

    import torch.distributed as dist

    from medmoe.cli import main as cli_main

    def opens_a_group(args):
        dist.init_process_group(
            backend="gloo", init_method=f"file://{tmp_path / 'rdzv'}", rank=0, world_size=1
        )
        return 0

    parser = argparse.ArgumentParser()
    parser.set_defaults(func=opens_a_group, command="fake")
    monkeypatch.setattr(cli_main, "build_parser", lambda: parser)
    assert cli_main.main([]) == 0
    assert not dist.is_initialized()
