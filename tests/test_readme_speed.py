"""The README's idle-machine speed table quotes the quiet benchmark outputs, figure by figure."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def figures(name: str, pattern: str) -> list[str]:
    found = re.findall(pattern, (RESULTS / name).read_text())
    assert found, (name, pattern)
    return list(found[0]) if isinstance(found[0], tuple) else [found[0]]


def test_idle_machine_table_matches_the_results_files():
    readme = (ROOT / "README.md").read_text()
    table = readme.split("**On an idle machine**", 1)[1].split("The figures below", 1)[0]
    quoted = [
        *figures("sam3d_speed_cpu_quiet.txt", r"encoder, literal padded \(s\)\s+([\d.]+)"),
        *figures("sam3d_speed_cpu_quiet.txt", r"encoder, fast exact \(s\)\s+([\d.]+)"),
        *figures("sam3d_speed_cpu_quiet.txt", r"ratio encoder fast / literal: ([\d.]+)"),
        *figures("sam3d_speed_cpu_quiet.txt", r"per-click predict, median \(ms\)\s+([\d.]+)"),
        *figures("sam3d_floor_cpu_quiet.txt", r"all\s+[\d.]+\s+([\d.]+)\s+(\d+)"),
        *figures("sam3d_floor_cpu_quiet.txt", r"floor \(all GEMMs\)\s+: ([\d.]+)"),
        *figures("sam3d_floor_cpu_quiet.txt", r"floor \(linear layers only\): ([\d.]+)"),
        *figures("sam3d_floor_cpu_quiet.txt", r"end to end\s+([\d.]+) ms"),
        *figures("sam3d_floor_cpu_quiet.txt", r"prompt encoder \(incl. validation\)\s+([\d.]+)"),
        *figures("moe_speed_cpu_quiet.txt", r"MoE\(1 expert\) / single decoder : ([\d.]+)"),
        *figures("moe_speed_cpu_quiet.txt", r"MoE\(15 experts\) / MoE\(1 expert\): ([\d.]+)"),
        *figures("moe_speed_cpu_quiet.txt", r"ratio whole MoE / plain\s+: ([\d.]+)"),
        *figures("moe_speed_cpu_quiet.txt", r"gate ([\d.]+) ms \+ expert decoder ([\d.]+) ms"),
        *figures("moe_speed_cpu_quiet.txt", r"needs <= ([\d.]+) ms"),
        *figures("moe_speed_cpu_quiet.txt", r"cost nothing the ratio would be .* = ([\d.]+)"),
    ]
    missing = [q for q in quoted if q not in table]
    assert not missing, missing
