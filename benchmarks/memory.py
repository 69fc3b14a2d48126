"""Peak memory of preparing and training on an image folder as it grows: cache vs in memory.

For each size (1x, 2x, 4x a base number of images, a generated folder of PNGs, 10 classes) and
each mode (`cache`: decoded images in the on-disk memmap cache, the default; `memory`:
`CNNVIT_CACHE=off`, one in-memory tensor as before; `stream`: the folder read with
`--streaming`, spooled to a fresh `datasets` cache, then the memmap cache), a fresh worker
process decodes the folder
and trains the CNN of the nano pair for one epoch, while a thread samples its memory every
10 ms through psutil. It reports the peak resident set (RSS, which also counts the cache's
file pages the process has touched: page cache the kernel can drop and re-read) and the peak
private memory (RSS minus shared, file-backed pages: what the process itself holds and what
must fit in RAM), each above the worker's memory right after its imports, plus training
images per second.

    python benchmarks/memory.py                       # 1x, 2x, 4x of 3000 images at 32 px
    python benchmarks/memory.py --base 500 --scales 1,4 --image-size 64 --threads 1
    python benchmarks/memory.py --base 1500 --image-size 128 --no-train   # decoding only
    python benchmarks/memory.py --modes cache,stream --no-train            # streaming too
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

CLASSES = 10


def make_folder(root: Path, count: int, pixels: int, seed: int = 0) -> Path:
    """`count` PNGs (pixels x pixels, RGB) in CLASSES class folders; class k has a bright bar
    at a class-specific height, so training learns something."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for index in range(count):
        klass = index % CLASSES
        image = rng.integers(0, 60, (pixels, pixels, 3), dtype=np.uint8)
        row = int((klass + 0.5) * pixels / CLASSES)
        image[row : row + max(1, pixels // 20), :] = 230
        folder = root / f"class_{klass}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{index:06d}.png", compress_level=1)
    return root


class Sampler:
    """Peak RSS and peak private memory (RSS - shared) of this process, sampled every 10 ms."""

    def __init__(self) -> None:
        import psutil

        self._process = psutil.Process()
        self.peak_rss = self.peak_private = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now(self) -> tuple[int, int]:
        info = self._process.memory_info()
        return info.rss, info.rss - getattr(info, "shared", 0)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss, private = self.now()
            self.peak_rss, self.peak_private = (
                max(self.peak_rss, rss),
                max(self.peak_private, private),
            )
            self._stop.wait(0.01)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def worker(
    folder: Path,
    image_size: int,
    batch_size: int,
    precision: str,
    threads: int,
    train: bool,
    streaming: bool = False,
) -> dict:
    """Decode `folder` and train the nano CNN one epoch; memory and speed figures."""
    # Everything imported before the baseline is read, so import costs are not counted.
    import datasets  # noqa: F401
    import sklearn.model_selection  # noqa: F401
    import torch
    import transformers  # noqa: F401

    if threads:
        torch.set_num_threads(threads)

    from cnnvit.config import DataConfig, TrainConfig
    from cnnvit.data import prepare_data
    from cnnvit.models import build_model
    from cnnvit.runtime import make_accelerator, place_model, resolve_runtime
    from cnnvit.training import Hooks, train_model
    from cnnvit.training.recipe import resolve_recipe

    sampler = Sampler()
    base_rss, base_private = sampler.now()
    runtime = resolve_runtime("cpu", precision)
    with sampler:
        started = time.perf_counter()
        data = prepare_data(DataConfig(dataset=str(folder), streaming=streaming))
        built = build_model("convnext-nano", "cnn", data.class_names, image_size, runtime.attention)
        images = data.tensors("train", built.processor)
        validation = data.tensors("validation", built.processor)
        decode_seconds = time.perf_counter() - started
        model, preprocess = place_model(built, runtime)
        if not train:  # decoding only: the images stay held until the end, as training holds them
            # Touch every page once. amax keeps uint8; sum would make an int64 copy (8x).
            images[0].amax(), validation[0].amax()
        # Validation batches of 2 x batch_size: full at every size here, so the evaluation's
        # activations do not grow with the validation split until it reaches the default 512.
        config = TrainConfig(
            epochs=1, lr=1e-3, batch_size=batch_size, eval_batch_size=2 * batch_size, augment=False
        )
        recipe = resolve_recipe(config, built.recipe, len(images[1]))
        result = train_model(
            model, preprocess, images, validation, recipe, make_accelerator(runtime), runtime,
            Hooks(log=lambda line: None),
        ) if train else None  # fmt: skip
    mb = 1 / 2**20
    return {
        "images": int(sum(len(s.labels) for s in data.splits.values())),
        "train_images": len(images[1]),
        "decoded_mb": sum(t[0].numel() for t in (images, validation)) * mb,
        "peak_rss_mb": (sampler.peak_rss - base_rss) * mb,
        "peak_private_mb": (sampler.peak_private - base_private) * mb,
        "baseline_rss_mb": base_rss * mb,
        "decode_seconds": decode_seconds,
        "train_images_per_second": len(images[1]) / result.train_seconds if result else None,
        "precision": runtime.precision,
        "threads": torch.get_num_threads(),
    }


def _line(row: dict) -> str:
    speed = row["train_images_per_second"]
    return (
        f"{row['scale']}x {row['mode']:6s} {row['images']:6d} images "
        f"({row['decoded_mb']:6.1f} MB decoded)  peak RSS +{row['peak_rss_mb']:6.1f} MB  "
        f"private +{row['peak_private_mb']:6.1f} MB  "
        + (f"train {speed:6.0f} img/s  " if speed else "")
        + f"decode {row['decode_seconds']:5.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=int, default=3000, help="images at 1x")
    parser.add_argument("--scales", default="1,2,4")
    parser.add_argument("--modes", default="cache,memory", help="cache, memory, stream")
    parser.add_argument("--image-size", type=int, default=32, help="model input and PNG size")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--precision", default="fp32", help="fp32, bf16 or auto")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: its default)")
    parser.add_argument("--no-train", action="store_true", help="decode only, no training")
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--streaming", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        figures = worker(
            Path(args.worker), args.image_size, args.batch_size, args.precision, args.threads,
            not args.no_train, args.streaming,
        )  # fmt: skip
        print(json.dumps(figures))
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="cnnvit-memory-") as temp:
        for scale in [int(s) for s in args.scales.split(",")]:
            folder = make_folder(Path(temp) / f"x{scale}", args.base * scale, args.image_size)
            for mode in args.modes.split(","):
                env = dict(os.environ)
                # A fresh cache per run: every run decodes, so the decode peak is measured too.
                env["CNNVIT_CACHE"] = "off" if mode == "memory" else f"{temp}/{mode}-{scale}"
                env["HF_DATASETS_CACHE"] = f"{temp}/datasets-{mode}-{scale}"  # a fresh spool
                done = subprocess.run(
                    [sys.executable, __file__, "--worker", str(folder),
                     "--image-size", str(args.image_size), "--batch-size", str(args.batch_size),
                     "--precision", args.precision, "--threads", str(args.threads),
                     *(["--no-train"] if args.no_train else []),
                     *(["--streaming"] if mode == "stream" else [])],
                    env=env, capture_output=True, text=True, check=False,
                )  # fmt: skip
                if done.returncode:
                    sys.exit(done.stderr[-3000:])
                row = {"scale": scale, "mode": mode, **json.loads(done.stdout.splitlines()[-1])}
                rows.append(row)
                print(_line(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
