"""Tests of the benchmark: one tiny end-to-end run of the driver, and the peer's augmentation."""

from __future__ import annotations

import json
import math
import random
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from cnnvit.data.preprocess import AugmentConfig

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import benchmark  # noqa: E402 - found through the path added above
import peer_hf_trainer  # noqa: E402


class _HighEnd(random.Random):
    """A generator whose every uniform draw is the top of its range: a known transform."""

    def uniform(self, a: float, b: float) -> float:
        return b


def _dot_image() -> Image.Image:
    """An 8x8 RGB image, black with one white pixel at row 2, column 3."""
    pixels = np.zeros((8, 8, 3), dtype=np.uint8)
    pixels[2, 3] = 255
    return Image.fromarray(pixels)


def test_peer_augmentation_zero_ranges_is_identity() -> None:
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8))
    still = AugmentConfig(max_rotation_degrees=0, max_translate_fraction=0, scale_range=(1, 1))
    out = peer_hf_trainer.augment_image(image, random.Random(0), still)
    assert np.array_equal(np.asarray(out), np.asarray(image))


def test_peer_augmentation_shift_moves_content() -> None:
    shift = AugmentConfig(max_rotation_degrees=0, max_translate_fraction=0.25, scale_range=(1, 1))
    out = np.asarray(peer_hf_trainer.augment_image(_dot_image(), _HighEnd(), shift))
    # A quarter of 8 px is 2 px right and 2 px down, with zero fill behind.
    assert out[4, 5].tolist() == [255, 255, 255]
    assert out.sum() == 3 * 255
    # The default config (random draws) changes images too: it cannot silently do nothing.
    rng, base = random.Random(0), np.asarray(_dot_image())
    for _ in range(10):
        out = np.asarray(peer_hf_trainer.augment_image(_dot_image(), rng, AugmentConfig()))
        assert not np.array_equal(out, base)


def test_output_paths_never_overwrite(tmp_path: Path) -> None:
    first_json, first_md = benchmark.output_paths(tmp_path)
    assert (first_json.name, first_md.name) == ("benchmark.json", "benchmark.md")
    first_json.write_text("{}")
    second_json, second_md = benchmark.output_paths(tmp_path)
    assert second_json != first_json and not second_json.exists()
    assert second_md.stem == second_json.stem


def test_benchmark_end_to_end_tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver spawns each worker with a command line; here each command runs in this
    process (through the same `main` and the same flags), which keeps what the test checks (the
    flags a worker gets, its JSON result, the summary and the table) without starting eight
    interpreters. Each worker sets torch's thread count; it is restored afterwards."""
    out = tmp_path / "results"
    commands: list[list[str]] = []

    def in_process(cmd: list[str], check: bool, env: dict) -> None:
        assert cmd[:2] == [sys.executable, benchmark.__file__] and check
        assert env["OMP_NUM_THREADS"] == "1"
        commands.append(cmd)
        benchmark.main(cmd[2:])

    monkeypatch.setattr(benchmark, "subprocess", SimpleNamespace(run=in_process))  # its own only
    # The peak of 512x512 products, not 2048x2048: lower than the real one, which can only
    # raise the MFU the test bounds by 1, in a fiftieth of the time.
    peak = benchmark.matmul_peak_flops
    monkeypatch.setattr(benchmark, "matmul_peak_flops", lambda *a: peak(*a, size=512, repeats=3))
    threads = torch.get_num_threads()
    # One model, all three sides (plain recipe, same-recipe peer, cnnvit), two epoch counts.
    flags = "--dataset digits --presets resnet-nano --epochs 1,3 --repeats 1"
    flags += " --max-train-samples 64 --max-eval-samples 40 --image-size 16 --threads 1"
    flags += " --sides plain,peer,cnnvit --lr 5e-4"  # the peer has no tuner: it needs a number
    try:
        benchmark.main([*flags.split(), "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    workers = [cmd[cmd.index("--worker") + 1] for cmd in commands]
    assert workers == ["peak", "plain", "peer", "cnnvit", "plain", "peer", "cnnvit"]
    assert all("--max-train-samples" in cmd and "--threads" in cmd for cmd in commands)
    report = json.loads((out / "benchmark.json").read_text())
    labels = ["resnet-nano, 1 epochs", "resnet-nano, 3 epochs"]
    assert sorted(report["summary"]) == labels
    for label in labels:
        summary = report["summary"][label]
        for side in ("plain", "peer", "cnnvit"):
            figures = summary[side]
            assert figures["train_images_per_second"] > 0
            assert figures["eval_images_per_second"] > 0
            assert 0 <= figures["test_accuracy"] <= 1
            assert 0 < figures["mfu"] <= 1.0  # above the measured peak is impossible
        assert len(report["runs"][label]) == 3  # one repeat, three sides
        assert summary["cnnvit"]["lr"] == 5e-4 and summary["plain"]["lr"] == 1e-3
        plain_points = 100 * (
            summary["cnnvit"]["test_accuracy"] - summary["plain"]["test_accuracy"]
        )
        assert summary["accuracy_vs_plain_points"] == pytest.approx(plain_points)
    # Each row's worker trained its own epoch count: the budget rule saw 1 and 3 epochs.
    strengths = [
        next(r for r in report["runs"][label] if r["side"] == "cnnvit")["recipe"]["strength"]
        for label in labels
    ]
    assert strengths == [0.0, pytest.approx(math.log(1.5) / math.log(10))]
    table = (out / "benchmark.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and "nano" in line]
    assert [row.split("|")[1].strip() for row in rows] == labels
    assert "matmul peak" in table


def test_the_paired_table_matches_seeds_and_gives_a_t_interval(tmp_path: Path) -> None:
    import paired

    # Seeds 0-2 in A and B (B 1, 2 and 3 points higher), seed 3 only in A: it is left out.
    for side, accuracies in (("a", [0.90, 0.80, 0.70, 0.5]), ("b", [0.91, 0.82, 0.73])):
        for seed, accuracy in enumerate(accuracies):
            run = tmp_path / f"{side}-{seed}"
            run.mkdir()
            record = {"config": {"train": {"seed": seed}},
                      "models": {"cnn": {"test": {"accuracy": accuracy}}}}  # fmt: skip
            (run / "run.json").write_text(json.dumps(record))
    a, b = (paired.accuracies(str(tmp_path / f"{side}-*"), "cnnvit") for side in "ab")
    rows = paired.table(a, b)
    assert rows[0] == "seeds 0, 1, 2"
    # Differences 1, 2, 3 points: mean 2, sd 1, t(0.975, 2) = 4.303, half-width 4.303 / sqrt 3.
    assert rows[-1].startswith("| cnn | 90.00, 80.00, 70.00 | 91.00, 82.00, 73.00 | +2.00 |")
    assert "-0.48 to +4.48" in rows[-1] and "| 0.07 |" in rows[-1]  # paired t: t = 3.46, 2 df
