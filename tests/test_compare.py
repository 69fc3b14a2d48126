"""End-to-end: a real `compare` on digits, its run.json, its files, and the CLI around it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TINY, copy_run

from cnnvit.cli import main
from cnnvit.runs import load_run

CHANCE = 0.1  # ten digit classes


def _metrics(run_dir: Path) -> dict:
    """run.json's record, read through the loader (the only reader of runs)."""
    return load_run(run_dir).raw


def test_both_models_learn_well_above_chance(tiny_run: Path) -> None:
    from scipy.stats import binomtest

    metrics = _metrics(tiny_run)
    for family in ("cnn", "vit"):
        test = metrics["models"][family]["test"]
        # At least three times chance, and a score guessing could reach on these test images
        # once in ten thousand runs at most (exact one-sided binomial test).
        n = TINY["max_eval_samples"]
        correct = round(test["accuracy"] * n)
        assert test["accuracy"] > 3 * CHANCE, (family, test["accuracy"])
        assert binomtest(correct, n, CHANCE, alternative="greater").pvalue < 1e-4, family
        # Learning happened: the best validation accuracy beats the first epoch's.
        history = metrics["models"][family]["history"]
        assert max(h["val_accuracy"] for h in history) > history[0]["val_accuracy"]
        assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_run_json_has_every_key_in_range(tiny_run: Path) -> None:
    metrics = _metrics(tiny_run)
    dataset = metrics["dataset"]
    assert dataset["name"] == "digits" and dataset["num_classes"] == 10
    assert dataset["class_names"] == [str(i) for i in range(10)]
    assert dataset["splits"]["train"] == TINY["max_train_samples"]
    assert dataset["splits"]["test"] == TINY["max_eval_samples"]
    env = metrics["environment"]
    for key in ("device", "threads", "torch", "transformers", "cnnvit", "git_commit"):
        assert key in env
    assert env["threads"] >= 1
    for family, name in (("cnn", TINY["cnn"]), ("vit", TINY["vit"])):
        model = metrics["models"][family]
        assert model["name"] == name and model["family"] == family
        assert model["source"] == "preset" and model["pretrained"] is False
        assert 100_000 < model["params"] < 1_000_000
        assert model["flops_per_image"] > model["params"]  # every weight is used at least once
        assert len(model["history"]) == TINY["epochs"]
        for row in model["history"]:
            assert set(row) >= {
                "epoch",
                "train_loss",
                "train_accuracy",
                "val_loss",
                "val_accuracy",
                "seconds",
            }
            assert 0 <= row["train_accuracy"] <= 1 and 0 <= row["val_accuracy"] <= 1
            assert row["train_loss"] > 0 and row["seconds"] > 0
        assert 1 <= model["best_epoch"] <= TINY["epochs"]
        best = model["history"][model["best_epoch"] - 1]["val_accuracy"]
        assert best == max(h["val_accuracy"] for h in model["history"])
        test = model["test"]
        assert 0 <= test["accuracy"] <= test["top5_accuracy"] <= 1
        assert 0 <= test["macro_f1"] <= 1 and test["loss"] > 0
        assert len(test["per_class"]) == 10
        matrix = test["confusion_matrix"]
        assert sum(map(sum, matrix)) == TINY["max_eval_samples"]
        assert sum(matrix[i][i] for i in range(10)) / TINY["max_eval_samples"] == pytest.approx(
            test["accuracy"]
        )
        eff = model["efficiency"]
        for key in ("train_images_per_second", "inference_images_per_second", "latency_ms_batch1"):
            assert eff[key] > 0
        assert eff["peak_memory_mb"] >= 0
        assert model["training"]["precision"] == TINY["precision"] == "fp32"
    comparison = metrics["comparison"]
    parts = ("both_correct", "only_cnn_correct", "only_vit_correct", "both_wrong")
    assert sum(comparison[p] for p in parts) == comparison["test_size"] == TINY["max_eval_samples"]
    assert 0 <= comparison["mcnemar_p_value"] <= 1


def test_train_time_is_bounded_by_the_wall_clock(tmp_path: Path) -> None:
    """Recorded training seconds and throughput agree with a clock outside the run."""
    import time

    from conftest import MINI

    from cnnvit import compare

    start = time.perf_counter()
    run = load_run(compare(dataset="digits", output=str(tmp_path / "r"), report=False, **MINI))
    wall = time.perf_counter() - start
    seconds = [m.efficiency["train_seconds"] for m in run.models.values()]
    assert 0 < sum(seconds) < wall  # both trainings happened inside the call
    n_train = run.dataset["splits"]["train"]
    for model in run.models.values():
        # images/s: every image trained over the training seconds of all epochs.
        trained = n_train * len(model.history)
        assert model.efficiency["train_images_per_second"] == pytest.approx(
            trained / model.efficiency["train_seconds"]
        )
        assert model.efficiency["train_seconds"] == pytest.approx(
            sum(row["seconds"] for row in model.history)
        )


def test_run_directory_holds_models_and_report(tiny_run: Path) -> None:
    for family in ("cnn", "vit"):
        assert (tiny_run / family / "config.json").is_file()
        assert (tiny_run / family / "model.safetensors").is_file()
        assert (tiny_run / family / "preprocessor_config.json").is_file()
    for name in ("run.json", "split.json", "report.md", "report.html"):
        assert (tiny_run / name).stat().st_size > 100
    html = (tiny_run / "report.html").read_text()
    assert "data:image/png;base64," in html


def test_report_rebuilds_from_run_dir(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture, quick_figures: None
) -> None:
    run = copy_run(tiny_run, tmp_path)
    original = (run / "report.md").read_text()
    (run / "report.md").unlink()
    assert main(["report", str(run)]) == 0
    assert "report.html" in capsys.readouterr().out
    rebuilt = (run / "report.md").read_text()
    # The same report, apart from the line saying when it was built.
    strip = [line for line in original.splitlines() if not line.startswith("report built")]
    assert [line for line in rebuilt.splitlines() if not line.startswith("report built")] == strip


def test_evaluate_saved_model_reproduces_test_accuracy(
    tiny_run: Path, capsys: pytest.CaptureFixture
) -> None:
    metrics = _metrics(tiny_run)
    out = tiny_run.parent / "eval-digits.json"
    code = main(
        [
            "evaluate",
            str(tiny_run / "cnn"),
            "--dataset",
            "digits",
            "--max-eval-samples",
            str(TINY["max_eval_samples"]),
            "--json",
            str(out),
        ]
    )
    assert code == 0
    result = json.loads(out.read_text())
    # Same split, same weights, fp32 in both: the same accuracy, give or take one borderline
    # image (another evaluation batch size sums in another order).
    assert result["test"]["accuracy"] == pytest.approx(
        metrics["models"]["cnn"]["test"]["accuracy"], abs=1.01 / TINY["max_eval_samples"]
    )


def test_config_file_and_flags(tmp_path: Path) -> None:
    from cnnvit.config import build_config, load_config_file

    path = tmp_path / "study.yaml"
    path.write_text("epochs: 3\nlr: 0.001\ndataset: digits\naugment: false\n")
    values = load_config_file(path)
    config = build_config({**values, "epochs": 5})  # a flag overrides the file
    assert config.train.epochs == 5 and config.train.lr == 0.001 and config.train.augment is False
    # config.json of a run (grouped by stage) loads back as a config file.
    grouped = build_config(json.loads(json.dumps(config.to_dict())))
    assert grouped == config


def test_yaml_numbers_without_a_dot_are_numbers(tmp_path: Path) -> None:
    from cnnvit.config import build_config, load_config_file

    yaml_file = tmp_path / "study.yaml"
    yaml_file.write_text("lr: 5e-4\n")  # YAML reads this as a string
    assert build_config(load_config_file(yaml_file)).train.lr == 5e-4


def test_help_lists_every_option_with_its_default(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for flag in ("--dataset", "--cnn", "--vit", "--epochs", "--batch-size", "--lr", "--image-size",
                 "--seed", "--max-train-samples", "--output", "--config"):  # fmt: skip
        assert flag in text
    from cnnvit.config import TrainConfig

    assert f"(default: {TrainConfig().epochs})" in text and "(default: digits)" in text
