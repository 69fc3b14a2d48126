"""Damaged model folders: each ends in one clear line naming the file and what to do, and a run
that could not start creates nothing. Folders are tiny random-weight save_pretrained outputs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from transformers import (
    ResNetConfig,
    ResNetForImageClassification,
    ViTConfig,
    ViTForImageClassification,
)

from cnnvit.cli import main
from cnnvit.errors import CnnvitError
from cnnvit.models.build import build_model


def _vit(folder: Path, hidden: int = 32) -> Path:
    config = ViTConfig(hidden_size=hidden, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=64, image_size=16, patch_size=8, num_labels=5)  # fmt: skip
    ViTForImageClassification(config).save_pretrained(folder)
    return folder


def _build(folder: Path) -> None:
    build_model(str(folder), "vit", ["a", "b", "c"], 16, attention="eager")


def _one_line(err: pytest.ExceptionInfo, *fragments: str) -> None:
    message = str(err.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_a_sound_folder_loads_and_is_named_by_its_folder(tmp_path: Path):
    folder = _vit(tmp_path / "my-vit")
    built = build_model(str(folder), "vit", ["a", "b", "c"], 16, attention="eager")
    assert built.name == "my-vit" and built.info()["path"] == str(folder.resolve())
    assert built.model.config.num_labels == 3  # the head alone was replaced


def test_truncated_safetensors_names_the_file(tmp_path: Path):
    folder = _vit(tmp_path / "vit")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CnnvitError) as err:
        _build(folder)
    _one_line(err, str(weights), "damaged", "save the model again")


def test_missing_weights_file_names_the_folder(tmp_path: Path):
    folder = _vit(tmp_path / "vit")
    (folder / "model.safetensors").unlink()
    with pytest.raises(CnnvitError) as err:
        _build(folder)
    _one_line(err, str(folder), "no weights file")


def test_weights_of_another_size_are_refused_not_resized(tmp_path: Path):
    folder = _vit(tmp_path / "vit", hidden=48)
    shutil.copy(_vit(tmp_path / "small", hidden=32) / "model.safetensors", folder)
    with pytest.raises(CnnvitError) as err:
        _build(folder)
    _one_line(err, "another architecture", "another shape", "config.json")


def test_weights_of_another_family_are_refused(tmp_path: Path):
    folder = tmp_path / "resnet"
    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=5)
    ResNetForImageClassification(config).save_pretrained(folder)
    shutil.copy(_vit(tmp_path / "vit") / "model.safetensors", folder)
    with pytest.raises(CnnvitError) as err:
        build_model(str(folder), "cnn", ["a", "b"], 16)
    _one_line(err, "another architecture", "missing from")


def test_unparsable_processor_config_is_refused(tmp_path: Path):
    folder = _vit(tmp_path / "vit")
    (folder / "preprocessor_config.json").write_text('{"size": {"height": 16,', encoding="utf-8")
    with pytest.raises(CnnvitError) as err:
        _build(folder)
    _one_line(err, "preprocessor_config.json", "does not parse", "delete it")


def test_the_cli_exits_non_zero_with_one_line_and_creates_no_run(
    tmp_path: Path, capsys: pytest.CaptureFixture
):
    folder = _vit(tmp_path / "vit")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    out = tmp_path / "run"
    args = ["compare", "--vit", str(folder), "--epochs", "1", "--image-size", "16",
            "--max-train-samples", "40", "--max-eval-samples", "20"]  # fmt: skip
    code = main([*args, "--output", str(out)])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("cnnvit: error:")]
    assert code == 1 and len(lines) == 1 and "Traceback" not in err, err
    assert str(weights) in lines[0]
    assert not out.exists()
