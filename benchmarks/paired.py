"""Paired A/B table of test accuracy: two sets of runs of the same cells, matched by seed.

    .venv/bin/python benchmarks/paired.py 'old/digits-*' 'new/digits-*'
    .venv/bin/python benchmarks/paired.py 'old/fm10-*' 'new/fm10-*' --a-side cnnvit

Each argument is a glob of run directories (`cnnvit compare` output, run.json) or benchmark
directories (benchmark.py output, benchmark.json; `--a-side`/`--b-side` pick its side: cnnvit,
plain or peer). Runs are paired by training seed; for each model the table gives both sides' test
accuracy per seed, the mean of B - A in points, the 95% interval of that mean (Student's t over
the paired differences) and the paired t-test's two-sided p-value (scipy.stats.ttest_rel).
"""

from __future__ import annotations

import argparse
import glob
import json
import statistics
from pathlib import Path

from scipy import stats


def accuracies(pattern: str, side: str) -> dict[int, dict[str, float]]:
    """{seed: {model role or preset: test accuracy}} for every directory matching `pattern`."""
    found: dict[int, dict[str, float]] = {}
    for folder in sorted(glob.glob(pattern)):
        path = Path(folder)
        if (path / "run.json").is_file():
            run = json.loads((path / "run.json").read_text())
            seed = int(run["config"]["train"]["seed"])
            found[seed] = {role: m["test"]["accuracy"] for role, m in run["models"].items()}
        elif (path / "benchmark.json").is_file():
            bench = json.loads((path / "benchmark.json").read_text())
            seed = int(bench["settings"]["seed"])
            summary = bench["summary"].items()
            found[seed] = {name: runs[side]["test_accuracy"] for name, runs in summary
                           if side in runs}  # fmt: skip
    return found


def table(a: dict[int, dict[str, float]], b: dict[int, dict[str, float]]) -> list[str]:
    """Markdown rows: per model, A and B per seed, mean B - A, its 95% t-interval, p."""
    seeds = sorted(set(a) & set(b))
    models = sorted(set.intersection(*(set(a[s]) & set(b[s]) for s in seeds))) if seeds else []
    lines = [f"seeds {', '.join(map(str, seeds))}", "",
             "| model | A (per seed) | B (per seed) | B - A, points | 95% CI | p |",
             "|---|---|---|---:|---|---:|"]  # fmt: skip
    for model in models:
        diffs = [100 * (b[s][model] - a[s][model]) for s in seeds]
        mean = statistics.fmean(diffs)
        if len(diffs) > 1 and statistics.stdev(diffs) > 0:
            half = stats.t.ppf(0.975, len(diffs) - 1) * statistics.stdev(diffs) / len(diffs) ** 0.5
            p = stats.ttest_rel([b[s][model] for s in seeds], [a[s][model] for s in seeds]).pvalue
            interval, shown = f"{mean - half:+.2f} to {mean + half:+.2f}", f"{p:.2f}"
        else:
            interval, shown = "n/a", "n/a"
        per = [", ".join(f"{100 * side[s][model]:.2f}" for s in seeds) for side in (a, b)]
        lines.append(f"| {model} | {per[0]} | {per[1]} | {mean:+.2f} | {interval} | {shown} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", help="glob of the A runs")
    parser.add_argument("b", help="glob of the B runs")
    parser.add_argument("--a-side", default="cnnvit", help="benchmark.json side for A")
    parser.add_argument("--b-side", default="cnnvit", help="benchmark.json side for B")
    args = parser.parse_args(argv)
    print("\n".join(table(accuracies(args.a, args.a_side), accuracies(args.b, args.b_side))))


if __name__ == "__main__":
    main()
