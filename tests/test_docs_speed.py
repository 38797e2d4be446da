"""docs/performance.md's idle-machine speed table quotes the quiet benchmark outputs, figure by figure."""

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
    readme = (ROOT / "docs" / "performance.md").read_text()
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
        *figures("moe_speed_cpu_quiet.txt", r"the plain click without its decoder: ([\d.]+) ms"),
        *figures(
            "moe_speed_cpu_quiet.txt", r"single decoder ([\d.]+) ms \| MoE, 1 expert ([\d.]+)"
        ),
        *figures("moe_speed_cpu_quiet.txt", r"MoE, 15 experts ([\d.]+) ms"),
        *figures("moe_speed_cpu_quiet.txt", r"median: plain ([\d.]+) s \| MoE ([\d.]+) s"),
        *figures("moe_speed_cpu_quiet.txt", r"one after the other on 2 threads ([\d.]+) ms"),
        *figures("moe_speed_cpu_quiet.txt", r"two threads of 1: ([\d.]+) ms"),
        *figures("moe_speed_cpu_quiet.txt", r"replayed: decoder ([\d.]+) ms, gate ([\d.]+) ms"),
        *figures("moe_speed_cpu_quiet.txt", r"replayed: .* ratio >= ([\d.]+)"),
        *figures("moe_speed_cpu_quiet.txt", r"best GEMM rate \((\d+) GFLOP/s\)"),
        *figures(
            "moe_speed_cpu_quiet.txt",
            r"decoder ([\d.]+) GMAC ([\d.]+) ms, gate ([\d.]+) GMAC ([\d.]+) ms",
        ),
        *figures("moe_speed_cpu_quiet.txt", r"else free: ratio >= ([\d.]+)"),
    ]
    missing = [q for q in quoted if q not in table]
    assert not missing, missing
    reachable = figures("moe_speed_cpu_quiet.txt", r"1.5 reachable on this machine: (\w+)")
    assert reachable == ["no"] and "≤ 1.5: not reachable" in table


def test_onnx_paragraph_matches_its_results_file():
    page = (ROOT / "docs" / "sam3d.md").read_text()  # the ONNX export's section
    text = page.split("onnxruntime beside torch", 1)[1]
    runs = (RESULTS / "onnx_speed_cpu_quiet.txt").read_text().split("\n# Run ")
    random_weights, trained, spinning = runs[1], runs[2], runs[3]

    def grab(run: str, pattern: str) -> list[str]:
        found = re.findall(pattern, run)
        assert found, pattern
        return list(found[0]) if isinstance(found[0], tuple) else [found[0]]

    quoted = [
        *grab(random_weights, r"encoder, torch\s+([\d.]+) s"),
        *grab(random_weights, r"encoder, onnxruntime fp32\s+([\d.]+) s"),
        *grab(random_weights, r"encoder, onnxruntime int8\s+([\d.]+) s"),
        *grab(random_weights, r"decoder\), torch\s+([\d.]+) ms"),
        *grab(random_weights, r"decoder\), onnx\s+([\d.]+) ms"),
        *grab(random_weights, r"from torch: fp32 ([\d.e+-]+), int8 ([\d.e+-]+)"),
        *grab(spinning, r"decoder\), torch\s+([\d.]+) ms"),
        *grab(trained, r"Dice\(int8 mask, fp32 mask\): mean ([\d.]+), min ([\d.]+)"),
        *grab(trained, r"voxels that differ: mean ([\d.e+-]+)"),
        *grab(trained, r"positive\): mean ([\d.]+)"),
    ]
    assert "spin between calls: yes" in spinning and "spin between calls: no" in random_weights
    missing = [q for q in quoted if q not in text]
    assert not missing, missing
