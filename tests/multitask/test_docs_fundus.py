"""docs/fundus.md's figures are the fundus demo's report and the seeds benchmark's results file:
every decimal number and percentage in its demo and seeds paragraphs occurs in the file it
quotes (or is derived from it here), and the headline figures are all quoted."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "docs" / "figures" / "fundus" / "report.md"
SEEDS = ROOT / "benchmarks" / "results" / "fundus_seeds_cpu.md"
WHOLE = ROOT / "benchmarks" / "results" / "fundus_routing_whole_cpu.txt"
NUMBER = r"(?<![\w.])[+\-−]?\d+\.\d+(?![\d])|(?<![\w.])\d+ ?%"


def block(name: str) -> str:
    text = (ROOT / "docs" / "fundus.md").read_text()
    assert text.count(f"<!-- {name} -->") == 1 and text.count(f"<!-- /{name} -->") == 1, name
    return text.split(f"<!-- {name} -->", 1)[1].split(f"<!-- /{name} -->", 1)[0]


def numbers(text: str) -> set[str]:
    return {n.replace("−", "-").lstrip("+-").replace(" ", "") for n in re.findall(NUMBER, text)}


def test_every_figure_of_the_demo_paragraph_is_the_reports():
    report = REPORT.read_text()
    text = block("fundus-demo")
    timings = dict(re.findall(r"^- (.+): ([\d.]+)$", report.split("## Timings (s)", 1)[1], re.M))
    total_min = f"{sum(float(v) for v in timings.values()) / 60:.1f}"
    unquoted = numbers(text) - numbers(report) - {total_min}
    assert not unquoted, f"figures in docs/fundus.md's demo paragraph not in the report: {unquoted}"
    # the judgement and every miss, with both sides' values and the gap
    verdict = re.search(r"^(\d+ PASS, \d+ MISS of \d+ metrics)\.$", report, re.M)[1]
    assert verdict in text
    misses = re.findall(
        r"^- (\w+): MoE ([\d.]+) vs single-task ([\d.]+) \(([+-][\d.]+); within 5 points: MISS",
        report,
        re.M,
    )
    assert misses, "the report has no miss: the paragraph's wording needs a look"
    for metric, moe, single, gap in misses:
        lesion, kind = metric.split("_") if "_" in metric else (metric, "")
        assert lesion in text and moe in text and single in text and gap.lstrip("+-") in text
    # the whole model's cost, dense vs top-p, beside the heads-only ratio
    cost = re.search(r"^- whole model: .*$\n^- backbone: .*$", report, re.M)[0]
    assert numbers(cost) <= numbers(text), numbers(cost) - numbers(text)
    # a collapsed task is named
    for task in re.findall(r"^- .*, (\w+): test [\d./]+ \(collapsed\)", report, re.M):
        assert f"{task.upper()} routing collapsed" in text
    assert total_min in text and all(v in text for v in timings.values())


def test_every_figure_of_the_seeds_paragraph_is_the_results_files():
    from medmoe.multitask.data.synthetic import MA_MIN_RADIUS
    from medmoe.multitask.evaluation.evaluate import DEFAULT_THRESHOLD

    results = SEEDS.read_text()
    text = block("fundus-seeds")
    constants = {str(DEFAULT_THRESHOLD), str(MA_MIN_RADIUS)}  # the scoring's, the generator's
    unquoted = numbers(text) - numbers(results) - constants
    assert not unquoted, (
        f"figures in docs/fundus.md's seeds paragraph not in {SEEDS.name}: {unquoted}"
    )
    table = results.split("## Test split, mean ± std over the training seeds", 1)[1]
    rows = [
        x for x in table.split("Multi-task vs single-task", 1)[0].splitlines() if x.startswith("|")
    ]
    assert len(rows) == 5 and all(r in text for r in rows)  # the mean ± std table, verbatim
    verdict = re.search(r"on the means: (\d+ PASS, \d+ MISS of \d+ metrics)", results)[1]
    assert verdict in text
    machine = re.search(r"^machine: (.*)$", results, re.M)[1]
    threads = re.search(r"threads=(\d+)", machine)[1]
    assert f"{threads} thread" in text


def test_the_published_size_cost_is_the_benchmarks():
    results = WHOLE.read_text()
    text = block("fundus-cost")
    assert numbers(text) <= numbers(results), numbers(text) - numbers(results)
    flops = re.search(r"whole model, GFLOP: .* ratio ([\d.]+)", results)[1]
    share = re.search(r"backbone [\d.]+ \((\d+%) of dense\)", results)[1]
    assert f"**{flops} of dense**" in text and f"{share} of the dense FLOPs" in text
