"""The default comparison's headline table on this host: `cnnvit compare` once per seed.

Each seed runs in a fresh process (`cnnvit compare --seed S` plus any extra flags after `--`)
into `OUT/seed-S/`; the table gives each run's `total_seconds`, test accuracies and training
images/s, their medians, and the host line (CPU, torch's kernel set, native bf16, the precision
the run trained in, torch, commit, date) that fixes which precision path the figures belong to.
It refuses an output folder that already holds a run, so no result is overwritten. Run it on a
quiet machine:

    .venv/bin/python benchmarks/default_compare.py --out benchmarks/results/default
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python \\
        benchmarks/default_compare.py --out benchmarks/results/default-avx2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    parser.add_argument("--out", required=True, type=Path, help="folder for the runs")
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    return args, extra


def run_seed(seed: int, out: Path, extra: list[str]) -> dict[str, Any]:
    """One `cnnvit compare` in its own process; its run.json."""
    command = [sys.executable, "-m", "cnnvit.cli", "compare", "--seed", str(seed),
               "--output-dir", str(out), "--quiet", *extra]  # fmt: skip
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return json.loads((out / "run.json").read_text())


def row(record: dict[str, Any]) -> dict[str, Any]:
    """The table's figures from one run.json."""
    models = [record["models"][f] for f in ("cnn", "vit")]
    return {
        "seconds": record["timings"]["total_seconds"],
        "acc": dict(zip(("cnn", "vit"), (m["test"]["accuracy"] for m in models), strict=True)),
        "img_s": dict(
            zip(
                ("cnn", "vit"),
                (m["efficiency"].get("train_images_per_second") for m in models),
                strict=True,
            )
        ),  # fmt: skip
        "names": dict(zip(("cnn", "vit"), (m.get("name") for m in models), strict=True)),
    }


def markdown(seeds: list[int], rows: list[dict[str, Any]], record: dict[str, Any]) -> str:
    env, resolved = record["environment"], record["resolved"]
    lines = [
        f"CPU {env.get('cpu')}, {env.get('threads')} threads, kernels {env.get('cpu_capability')}, "
        f"native bf16 {env.get('cpu_bf16')} (bf16/fp32 matmul {env.get('cpu_bf16_speedup')}), "
        f"trained in {resolved.get('precision')}; torch {env.get('torch')}, transformers "
        f"{env.get('transformers')}, commit {str(env.get('git_commit'))[:7]}, "
        f"{str(env.get('timestamp'))[:10]}",
        "",
        f"| seed | `total_seconds` | {rows[0]['names']['cnn']} / {rows[0]['names']['vit']} "
        "test acc | train img/s CNN / ViT |",
        "|---:|---:|---:|---:|",
    ]
    for seed, r in zip(seeds, rows, strict=True):
        speed = " / ".join(f"{r['img_s'][f]:,.0f}" if r["img_s"][f] else "n/a" for f in r["img_s"])
        lines.append(f"| {seed} | {r['seconds']:.0f} s | {r['acc']['cnn']:.2%} / "
                     f"{r['acc']['vit']:.2%} | {speed} |")  # fmt: skip
    median = statistics.median
    lines.append(
        f"| median | {median(r['seconds'] for r in rows):.0f} s | "
        f"{median(r['acc']['cnn'] for r in rows):.2%} / {median(r['acc']['vit'] for r in rows):.2%}"
        " | |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args, extra = parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    targets = [args.out / f"seed-{s}" for s in seeds]
    taken = [t for t in targets if t.exists()]
    if taken:
        raise SystemExit(f"{taken[0]} exists: choose another --out (results are never overwritten)")
    records = [run_seed(s, t, extra) for s, t in zip(seeds, targets, strict=True)]
    text = markdown(seeds, [row(r) for r in records], records[0])
    (args.out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
