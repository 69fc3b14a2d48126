"""Benchmark: cnnvit's training against the Hugging Face Trainer, for speed and for accuracy.

    .venv/bin/python benchmarks/benchmark.py --dataset ../shared/data/fashion_mnist \
        --max-train-samples 10000 --max-eval-samples 2000 --pairs micro,mini \
        --epochs 2 --repeats 3 --lr 5e-4 --output-dir benchmarks/results

Sides (`--sides`, any of): `peer`, the HF docs' Trainer recipe with cnnvit's hyper-parameters
(needs a number for `--lr`; the speed comparison); `plain`, Trainer with the plain recipe of issue
8 (lr 1e-3, linear decay, no augmentation or label smoothing: the accuracy floor cnnvit's
defaults must reach); `cnnvit`, the package as `cnnvit compare` runs it, learning rate tuned on
validation when `--lr auto` (tuning time is reported apart from training time). Every side trains
the same architecture from the same initial weights on the same splits; see peer_hf_trainer.py
and README.md.

Every measurement runs in a fresh worker process (this script with `--worker`), so the two
implementations never share accelerate's process-wide state, allocator or memory peak. Repeats
are interleaved (peer and cnnvit alternate which goes first) so slow drifts in the machine hit
both sides alike. The matmul peaks used for model FLOP utilisation are measured once, in their own
worker. Output: `<out>/benchmark.json` (every raw repeat, medians, environment) and
`<out>/benchmark.md` (the table); existing files are never overwritten.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from cnnvit.config import LR_WORDS, DataConfig, TrainConfig
from cnnvit.data import PreparedData, prepare_data
from cnnvit.evaluation import predict
from cnnvit.measure import environment, matmul_peak_flops, synchronize
from cnnvit.models import PRESETS, build_model, count_flops, default_pair_for
from cnnvit.runtime import (
    cpu_has_bf16,
    images_per_second,
    make_accelerator,
    place_model,
    resolve_device,
    resolve_runtime,
)
from cnnvit.training import Hooks, train_model
from cnnvit.training.recipe import resolve_recipe
from cnnvit.training.tuning import tune_learning_rate, untuned

SIDES = ("plain", "peer", "cnnvit")


def lr_value(text: str) -> float | str:
    """--lr: auto, usual or a positive number (as `cnnvit compare --lr`)."""
    if text in LR_WORDS:
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be auto, usual or a number, not {text!r}") from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="digits", help="as `cnnvit compare --dataset`")
    parser.add_argument("--max-train-samples", type=int, default=None)
    parser.add_argument("--max-eval-samples", type=int, default=None)
    parser.add_argument("--pairs", default="micro", help="comma-separated preset pair sizes")
    parser.add_argument("--models", choices=("cnn", "vit", "both"), default="both")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--lr", type=lr_value, default="auto",
        help="auto (tuned), usual (each family's usual rate) or a number",
    )  # fmt: skip
    parser.add_argument(
        "--sides", default="peer,cnnvit", help="comma-separated: plain, peer, cnnvit"
    )
    parser.add_argument(
        "--presets", default=None, help="comma-separated preset names (instead of --pairs)"
    )
    parser.add_argument(
        "--epochs",
        default="2",
        help="epochs per run; several, comma-separated (2,10), make one "
        "table with a row per model and epoch count",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, default=torch.get_num_threads(), help="torch threads per worker"
    )
    parser.add_argument("--output-dir", "--output_dir", "--out", dest="out",
                        default="benchmarks/results", help="folder for the results")  # fmt: skip
    # Internal: one measurement in this process, written as JSON to --result.
    parser.add_argument("--worker", choices=("peak", *SIDES), help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sides = args.sides.split(",")
    if not sides or any(side not in SIDES for side in sides):
        parser.error(f"--sides: choose from {', '.join(SIDES)}")
    if "peer" in sides and args.lr in LR_WORDS:
        parser.error("--sides peer needs a number for --lr (the peer has no tuner)")
    for name in (args.presets or "").split(",") if args.presets else []:
        if name not in PRESETS:
            parser.error(f"--presets: unknown preset '{name}'")
    sizes = {p.size for p in PRESETS.values()}
    for size in args.pairs.split(","):
        if size not in sizes:
            parser.error(f"--pairs: unknown size '{size}' (known: {', '.join(sorted(sizes))})")
    try:
        args.epoch_list = [int(e) for e in str(args.epochs).split(",")]
    except ValueError:
        parser.error(f"--epochs: whole numbers separated by commas, not {args.epochs!r}")
    args.epochs = args.epoch_list[0]  # what a worker runs (the driver passes one value each)
    if min(args.epoch_list) < 1 or args.repeats < 1 or args.threads < 1:
        parser.error("--epochs, --repeats and --threads must be at least 1")
    return args


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The one recipe both sides use; fields not set here keep TrainConfig's defaults."""
    return TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)


def load_data(args: argparse.Namespace) -> PreparedData:
    config = DataConfig(
        dataset=args.dataset,
        max_train_samples=args.max_train_samples,
        max_eval_samples=args.max_eval_samples,
        split_seed=args.seed,
    )
    return prepare_data(config)


def family_of(spec: str) -> str:
    return PRESETS[spec].family


# --- workers: each runs in its own process ------------------------------------------------


def worker_peak() -> dict[str, Any]:
    """Measured matmul FLOP/s: fp32 (the peer) and bf16 wherever the device runs it natively.

    Both where bf16 is native: whether a worker trains in bf16 is measured in that worker
    (runtime.cpu_fast_bf16), so this process cannot know which peak it will need."""
    device = resolve_device("auto")
    peaks = {"fp32": matmul_peak_flops(device, torch.float32)}
    native = cpu_has_bf16() if device.type == "cpu" else device.type == "cuda"
    if native:
        peaks["bf16"] = matmul_peak_flops(device, torch.bfloat16)
    return {"device": str(device), "matmul_peak_flops": peaks}


def worker_peer(args: argparse.Namespace, data: PreparedData, plain: bool = False) -> dict:
    """The HF docs' Trainer (peer_hf_trainer.py), fp32 and SDPA as transformers defaults.

    `plain`: the plain recipe; otherwise cnnvit's recipe with its "auto" values resolved.
    """
    import peer_hf_trainer  # next to this script, so on sys.path when run as a script

    family = family_of(args.model)
    built = build_model(args.model, family, data.class_names, args.image_size, "sdpa", args.seed)
    flops = flop_counts(built.model, args.image_size)
    config = train_config(args)
    result = peer_hf_trainer.train_and_evaluate(data, built, config, plain=plain)
    return {**flops, **result, "lr": 1e-3 if plain else config.lr}


def worker_cnnvit(args: argparse.Namespace, data: PreparedData) -> dict[str, Any]:
    """cnnvit's fast path, set up as pipeline.py's `_train_and_evaluate` does."""
    config = train_config(args)
    runtime = resolve_runtime()
    device, precision, attention = runtime.device, runtime.precision, runtime.attention
    accelerator = make_accelerator(runtime)
    family = family_of(args.model)
    built = build_model(args.model, family, data.class_names, args.image_size, attention, args.seed)
    model, preprocess = place_model(built, runtime)
    channels_last = preprocess.channels_last
    flops = flop_counts(model, args.image_size)

    start = time.perf_counter()  # decoding once to uint8 tensors: reported, not train time
    train = data.tensors("train", built.processor)
    validation = data.tensors("validation", built.processor)
    test_images, test_labels = data.tensors("test", built.processor)
    prepare_seconds = time.perf_counter() - start

    start = time.perf_counter()

    def fresh() -> tuple[torch.nn.Module, Any]:  # the same initial weights every call
        again = build_model(args.model, family, data.class_names, args.image_size, attention,
                            args.seed)  # fmt: skip
        return place_model(again, runtime)

    recipe = resolve_recipe(config, built.recipe, len(train[1]))
    if config.lr == "auto":
        tuning = tune_learning_rate(
            fresh, train, validation, recipe, built.recipe.lr_grid, accelerator, runtime,
            Hooks(name=args.model, log=say),
        )  # fmt: skip
    else:
        tuning = untuned(config.lr, recipe)
    tuning_seconds = time.perf_counter() - start
    recipe = dataclasses.replace(recipe, lr=tuning.chosen_lr)
    result = train_model(model, preprocess, train, validation, recipe, accelerator, runtime,
                         Hooks(name=args.model, log=say))  # fmt: skip
    synchronize(device)
    start = time.perf_counter()
    with runtime.autocast():
        logits, _ = predict(
            result.model, preprocess, test_images, test_labels, recipe.eval_batch_size
        )
    synchronize(device)
    eval_seconds = time.perf_counter() - start
    images = len(train[1])
    return {
        **flops,
        "device": str(device),
        "precision": precision,
        "memory_format": "channels_last" if channels_last else "contiguous",
        "attention": attention if family == "vit" else None,
        "prepare_seconds": prepare_seconds,
        "train_images": images,
        "train_seconds": result.train_seconds,
        "train_images_per_second": result.train_images_per_second,  # runtime's one definition
        "eval_images": len(test_labels),
        "eval_batch_size": recipe.eval_batch_size,
        "eval_seconds": eval_seconds,
        "eval_images_per_second": images_per_second(len(test_labels), eval_seconds),
        "test_accuracy": float((logits.argmax(1) == test_labels).float().mean()),
        "peak_memory_mb": result.peak_memory_mb,  # measured inside train_model
        "lr": tuning.chosen_lr,
        "tuning_seconds": tuning_seconds,
        "tuning_images": tuning.images_used,
        "tuning": tuning.to_dict(),
        "recipe": result.recipe.to_dict(),
    }


def flop_counts(model: torch.nn.Module, image_size: int) -> dict[str, Any]:
    """FLOPs per image of one training step (forward+backward) and of a forward pass."""
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "train_flops_per_image": count_flops(model, image_size, train_step=True),
        "forward_flops_per_image": count_flops(model, image_size, train_step=False),
    }


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_worker(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    if args.worker == "peak":
        out = worker_peak()
    else:
        data = load_data(args)
        if args.worker == "cnnvit":
            out = worker_cnnvit(args, data)
        else:
            out = worker_peer(args, data, plain=args.worker == "plain")
    out["threads"] = torch.get_num_threads()
    Path(args.result).write_text(json.dumps(out, indent=2))


# --- driver -------------------------------------------------------------------------------


def spawn(args: argparse.Namespace, worker: str, model: str | None, folder: Path) -> dict:
    """Run one worker process with the shared options; its JSON result."""
    result = folder / f"{worker}-{model or 'all'}-{len(list(folder.iterdir()))}.json"
    cmd = [sys.executable, __file__, "--worker", worker, "--result", str(result)]
    cmd += ["--model", model] if model else []
    for flag in ("dataset", "max_train_samples", "max_eval_samples", "image_size",
                 "batch_size", "lr", "epochs", "seed", "threads", "sides"):  # fmt: skip
        value = getattr(args, flag)
        if value is not None:
            cmd += [f"--{flag.replace('_', '-')}", str(value)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    subprocess.run(cmd, check=True, env=env)
    return json.loads(result.read_text())


def summarise(runs: list[dict], peaks: dict[str, float]) -> dict[str, Any]:
    """Medians over repeats of every number, per side, then the ratios between sides and MFU.

    MFU = train FLOPs/image x train images/s / the matmul peak of the dtype that side trains in.
    FLOPs/image is the largest of the sides' counts: torch's FLOP counter does not count the
    CPU SDPA kernel, so an SDPA model looks cheaper than the same model with eager attention.
    Ratios: cnnvit/peer speed (same recipe), cnnvit - plain accuracy in points.
    """
    flops = max(run["train_flops_per_image"] for run in runs)
    for run in runs:
        run["achieved_flops"] = flops * run["train_images_per_second"]
        run["mfu"] = run["achieved_flops"] / peaks["bf16" if run["precision"] == "bf16" else "fp32"]
    sides: dict[str, dict[str, Any]] = {}
    for side in SIDES:
        mine = [run for run in runs if run["side"] == side]
        if not mine:
            continue
        numeric = {k: v for k, v in mine[0].items() if not isinstance(v, bool)}
        keys = [k for k, v in numeric.items() if isinstance(v, int | float) and k != "repeat"]
        sides[side] = {k: statistics.median(run[k] for run in mine) for k in keys}
        sides[side].update({k: mine[0][k] for k in ("precision", "memory_format", "attention")})
    summary: dict[str, Any] = {
        **sides,
        "params": next(iter(sides.values()))["params"],
        "train_flops_per_image": flops,
        "forward_flops_per_image": max(s["forward_flops_per_image"] for s in sides.values()),
    }
    ours = sides.get("cnnvit")
    if ours and "peer" in sides:
        peer = sides["peer"]
        summary["train_speedup"] = ours["train_images_per_second"] / peer["train_images_per_second"]
        summary["eval_speedup"] = ours["eval_images_per_second"] / peer["eval_images_per_second"]
        summary["accuracy_difference_points"] = 100 * (
            ours["test_accuracy"] - peer["test_accuracy"]
        )
    if ours and "plain" in sides:
        summary["accuracy_vs_plain_points"] = 100 * (
            ours["test_accuracy"] - sides["plain"]["test_accuracy"]
        )
    return summary


def markdown(summary: dict[str, dict], peaks: dict[str, float]) -> str:
    """The results table, one row per model and a column group per side, peaks above it."""
    lines = [
        f"Measured matmul peak, {dtype}: {flops / 1e9:.1f} GFLOP/s"
        for dtype, flops in peaks.items()
    ]
    sides = [side for side in SIDES if any(side in s for s in summary.values())]
    head = ["model", "params", "train FLOPs/img"]
    for side in sides:
        head += [f"{side} train img/s", f"{side} eval img/s", f"{side} test acc", f"{side} MFU"]
    if "cnnvit" in sides:
        head += ["cnnvit lr", "cnnvit tuning s"]
    if {"peer", "cnnvit"} <= set(sides):
        head += ["train ratio cnnvit/peer", "eval ratio", "peak MB peer/cnnvit"]
    if {"plain", "cnnvit"} <= set(sides):
        head += ["cnnvit - plain (points)"]
    lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, s in summary.items():
        cells = [name, f"{s['params'] / 1e6:.2f} M", f"{s['train_flops_per_image'] / 1e6:.1f} M"]
        for side in sides:
            f = s[side]
            cells += [f"{f['train_images_per_second']:.0f}", f"{f['eval_images_per_second']:.0f}",
                      f"{f['test_accuracy']:.4f}", f"{f['mfu']:.1%}"]  # fmt: skip
        if "cnnvit" in sides:
            cells += [f"{s['cnnvit']['lr']:g}", f"{s['cnnvit']['tuning_seconds']:.0f}"]
        if {"peer", "cnnvit"} <= set(sides):
            memory = (s["peer"]["peak_memory_mb"], s["cnnvit"]["peak_memory_mb"])
            cells += [f"{s['train_speedup']:.2f}x", f"{s['eval_speedup']:.2f}x",
                      f"{memory[0]:.0f} / {memory[1]:.0f}"]  # fmt: skip
        if {"plain", "cnnvit"} <= set(sides):
            cells.append(f"{s['accuracy_vs_plain_points']:+.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def output_paths(out: Path) -> tuple[Path, Path]:
    """benchmark.json/.md in `out`, or timestamped names if either exists already."""
    out.mkdir(parents=True, exist_ok=True)
    stem = "benchmark"
    if (out / f"{stem}.json").exists() or (out / f"{stem}.md").exists():
        stem = f"benchmark-{time.strftime('%Y%m%d-%H%M%S')}"
        while (out / f"{stem}.json").exists() or (out / f"{stem}.md").exists():
            stem += "-1"
    return out / f"{stem}.json", out / f"{stem}.md"


def run_driver(args: argparse.Namespace, argv: list[str]) -> None:
    torch.set_num_threads(args.threads)
    json_path, md_path = output_paths(Path(args.out))
    families = ("cnn", "vit") if args.models == "both" else (args.models,)
    models = (
        args.presets.split(",")
        if args.presets
        else [  # (cnn, vit) of each pair
            spec
            for size in args.pairs.split(",")
            for spec, family in zip(default_pair_for(size), ("cnn", "vit"), strict=True)
            if family in families
        ]
    )
    sides = tuple(args.sides.split(","))
    # One table row per model, or per model and epoch count when several are given.
    several = len(args.epoch_list) > 1
    rows = [(m, e, f"{m}, {e} epochs" if several else m) for e in args.epoch_list for m in models]
    runs: dict[str, list[dict]] = {label: [] for _, _, label in rows}
    with tempfile.TemporaryDirectory(prefix="cnnvit-bench-") as tmp:
        folder = Path(tmp)
        peaks = spawn(args, "peak", None, folder)["matmul_peak_flops"]
        for repeat in range(args.repeats):
            order = sides if repeat % 2 == 0 else sides[::-1]  # alternate who goes first
            for model, epochs, label in rows:
                for side in order:
                    say(f"== repeat {repeat + 1}/{args.repeats}: {label}, {side}")
                    run_args = argparse.Namespace(**{**vars(args), "epochs": epochs})
                    result = spawn(run_args, side, model, folder)
                    runs[label].append({"side": side, "repeat": repeat, "epochs": epochs,
                                        **result})  # fmt: skip
    summary = {label: summarise(label_runs, peaks) for label, label_runs in runs.items()}
    env = environment(resolve_device("auto"))
    import accelerate
    import datasets

    env.update(cores=os.cpu_count(), accelerate=accelerate.__version__)
    env["datasets"] = datasets.__version__
    config = train_config(args)
    report = {
        "command": " ".join([Path(sys.executable).name, *argv]),
        "settings": {
            k: v
            for k, v in vars(args).items()
            if k not in ("worker", "model", "result", "epoch_list")
        }
        | {"epochs": args.epoch_list},
        "recipe": {
            **config.__dict__,
            "epochs": args.epoch_list,
            "peer_eval_batch_size": config.batch_size,
        },  # fmt: skip
        "environment": env,
        "matmul_peak_flops": peaks,
        "summary": summary,
        "runs": runs,
    }
    json_path.write_text(json.dumps(report, indent=2))
    table = markdown(summary, peaks)
    md_path.write_text(table)
    print(table)
    print(f"results: {json_path} and {md_path}")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker:
        run_worker(args)
    else:
        run_driver(args, [sys.argv[0], *argv])


if __name__ == "__main__":
    main()
