"""Bad input: one clear line, a non-zero exit, and nothing the user had overwritten."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cnnvit import hub
from cnnvit.cli import main


def run_cli(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    code = main(args)
    err = capsys.readouterr().err
    return code, err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code != 0
    lines = [line for line in err.splitlines() if line.startswith("cnnvit: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


FAST = ["--epochs", "1", "--cnn", "convnext-nano", "--vit", "vit-nano", "--image-size", "16",
        "--max-train-samples", "60", "--max-eval-samples", "30", "--precision", "fp32"]  # fmt: skip


def test_missing_dataset_path(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    code, err = run_cli(["compare", "--dataset", str(tmp_path / "nope"), *FAST], capsys)
    assert_one_line_error(code, err, "not found")


def test_unknown_dataset_name(capsys: pytest.CaptureFixture) -> None:
    code, err = run_cli(["compare", "--dataset", "no such set!", *FAST], capsys)
    assert_one_line_error(code, err, "not found")


def test_unknown_model(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    code, err = run_cli(
        ["compare", *FAST, "--vit", "./not-a-model", "--output", str(tmp_path / "r")], capsys
    )
    assert_one_line_error(code, err, "unknown model")
    assert not (tmp_path / "r").exists()  # nothing created for a run that could not start


def test_unreachable_hub_model_answers_in_seconds(
    capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A closed local port stands in for "no network", the same on every machine.
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    start = time.monotonic()
    code, err = run_cli(["compare", *FAST, "--vit", "google/vit-base-patch16-224"], capsys)
    assert time.monotonic() - start < 30
    assert_one_line_error(code, err, "cannot reach the Hugging Face hub", "preset")
    assert hub.hub_reachable(timeout_seconds=1) is False


def test_unreachable_hub_dataset(
    capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    code, err = run_cli(["compare", "--dataset", "someone/some-dataset", *FAST], capsys)
    assert_one_line_error(code, err, "cannot reach the Hugging Face hub", "digits")


def test_corrupt_and_non_image_files_warn_and_continue(
    image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (image_folder / "bars_top" / "broken.png").write_bytes(b"not a png at all")
    (image_folder / "bars_middle" / "notes.txt").write_text("ignored: not an image")
    out = tmp_path / "run"
    code = main(["compare", "--dataset", str(image_folder), *FAST, "--output", str(out),
                 "--test-fraction", "0.3"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    assert "1 of" in err and "could not be read" in err
    assert (out / "run.json").is_file()


def test_all_images_corrupt(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for name in ("a", "b"):
        (tmp_path / "bad" / name).mkdir(parents=True)
        for i in range(20):
            (tmp_path / "bad" / name / f"{i}.jpg").write_bytes(b"garbage")
    code, err = run_cli(["compare", "--dataset", str(tmp_path / "bad"), *FAST], capsys)
    assert_one_line_error(code, err, "could be read")


def test_single_class_folder(
    tmp_path: Path, image_folder: Path, capsys: pytest.CaptureFixture
) -> None:
    single = tmp_path / "single"
    single.mkdir()
    (image_folder / "bars_top").rename(single / "bars_top")
    code, err = run_cli(["compare", "--dataset", str(single), *FAST], capsys)
    assert_one_line_error(code, err, "one class")


def test_class_too_small_to_split(image_folder: Path, capsys: pytest.CaptureFixture) -> None:
    tiny = image_folder / "lonely"
    tiny.mkdir()
    (image_folder / "bars_top" / "0.png").rename(tiny / "0.png")
    code, err = run_cli(["compare", "--dataset", str(image_folder), *FAST], capsys)
    assert_one_line_error(code, err, "lonely", "too few")


def test_existing_output_is_never_touched(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    existing = tmp_path / "mine"
    existing.mkdir()
    (existing / "thesis.txt").write_text("precious")
    code, err = run_cli(["compare", *FAST, "--output", str(existing)], capsys)
    assert_one_line_error(code, err, "already exists")
    assert [p.name for p in existing.iterdir()] == ["thesis.txt"]
    assert (existing / "thesis.txt").read_text() == "precious"


def test_unknown_config_key_and_missing_config(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text("epochz: 3\n")
    code, err = run_cli(["compare", "--config", str(bad)], capsys)
    assert_one_line_error(code, err, "unknown config key 'epochz'")
    code, err = run_cli(["compare", "--config", str(tmp_path / "none.yaml")], capsys)
    assert_one_line_error(code, err, "config file not found")


def test_report_of_a_folder_that_is_not_a_run(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    code, err = run_cli(["report", str(tmp_path)], capsys)
    assert_one_line_error(code, err, "run.json")


def test_evaluate_a_folder_that_is_not_a_model(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    code, err = run_cli(["evaluate", str(tmp_path), "--dataset", "digits"], capsys)
    assert_one_line_error(code, err, "not a saved model folder")
