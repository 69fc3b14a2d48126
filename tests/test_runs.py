"""The run directory contract: what a finished run holds, the loader's checks, atomic writes,
and what survives when a real run is interrupted at different points."""

from __future__ import annotations

import dataclasses
import gc
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import MINI, TINY, copy_run

from cnnvit import pipeline, rescoring
from cnnvit.cli import main
from cnnvit.errors import CnnvitError
from cnnvit.formatting import metric_value
from cnnvit.report.facts import facts_from_run
from cnnvit.runs import SCHEMA_VERSION, load_run, write_atomic


def test_finished_run_holds_the_contract(tiny_run: Path) -> None:
    run = load_run(tiny_run)
    assert run.schema_version == SCHEMA_VERSION and run.status == "complete" and not run.missing
    assert run.config.train.epochs == TINY["epochs"] and run.config.models.vit == TINY["vit"]
    manifest = json.loads((tiny_run / "split.json").read_text())
    ids = {k: manifest["ids"][k] for k in ("train", "validation", "test")}
    assert len(ids["train"]) == TINY["max_train_samples"]
    assert len(ids["test"]) == TINY["max_eval_samples"]
    assert manifest["split_seed"] == 0 and manifest["train_seed"] == 0
    everything = ids["train"] + ids["validation"] + ids["test"]
    assert len(set(everything)) == len(everything)  # no image in two splits
    for family in ("cnn", "vit"):
        model = run.models[family]
        assert model.complete and (model.path / "model.safetensors").is_file()
        preds = model.predictions()
        assert preds.logits.dtype == np.float32 and preds.logits.shape == (len(ids["test"]), 10)
        assert preds.ids.tolist() == ids["test"]
        # The saved predictions are the ones the reported accuracy was computed from.
        assert preds.correct.mean() == pytest.approx(model.test["accuracy"])
        assert len(model.history) == TINY["epochs"]
    cnn, vit = run.models["cnn"].predictions(), run.models["vit"].predictions()
    assert np.array_equal(cnn.labels, vit.labels)
    only_cnn = int((cnn.correct & ~vit.correct).sum())
    assert run.comparison["only_cnn_correct"] == only_cnn
    # The dataset's labels for those ids: digits are the source's only split, so id = row.
    from sklearn.datasets import load_digits

    assert np.array_equal(cnn.labels, load_digits().target[cnn.ids])


def test_run_json_config_loads_back_as_a_config_file(tiny_run: Path) -> None:
    from cnnvit.config import build_config, load_config_file

    config = build_config(load_config_file(tiny_run / "run.json"))
    assert config == load_run(tiny_run).config
    assert config.output == str(tiny_run)  # what was asked; a new run needs another directory


def _damage(run: Path, tmp_path: Path, name: str) -> Path:
    return copy_run(run, tmp_path, name)


def test_loader_refuses_newer_unknown_and_damaged_runs(tiny_run: Path, tmp_path: Path) -> None:
    newer = _damage(tiny_run, tmp_path, "newer")
    record = json.loads((newer / "run.json").read_text())
    (newer / "run.json").write_text(json.dumps({**record, "schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(CnnvitError, match="newer than this cnnvit reads"):
        load_run(newer)
    (newer / "run.json").write_text(json.dumps({**record, "schema_version": "one"}))
    with pytest.raises(CnnvitError, match="no valid schema_version"):
        load_run(newer)

    truncated = _damage(tiny_run, tmp_path, "truncated")
    npz = truncated / "vit" / "predictions.npz"
    npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])
    with pytest.raises(CnnvitError, match="damaged or truncated"):
        load_run(truncated)

    missing = _damage(tiny_run, tmp_path, "missing")
    (missing / "cnn" / "predictions.npz").unlink()
    with pytest.raises(CnnvitError, match="predictions.npz is missing"):
        load_run(missing)

    with pytest.raises(CnnvitError, match="no run.json"):
        load_run(tmp_path)
    old = tmp_path / "old"
    old.mkdir()
    (old / "metrics.json").write_text("{}")
    with pytest.raises(CnnvitError, match="older cnnvit"):
        load_run(old)


def test_cli_errors_on_a_damaged_run_are_one_line(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    broken = _damage(tiny_run, tmp_path, "broken")
    (broken / "cnn" / "predictions.npz").write_bytes(b"PK\x03\x04 not really a zip")
    assert main(["report", str(broken)]) == 1
    err = capsys.readouterr().err
    assert err.count("cnnvit: error:") == 1 and "Traceback" not in err
    assert "predictions.npz" in err


def test_atomic_write_interrupted_midway_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "run.json"
    write_atomic(target, "old content\n")
    real_fdopen = os.fdopen

    class Dying:
        """A file that writes half of what it is given, then the process 'dies'."""

        def __init__(self, handle: int, mode: str) -> None:
            self.file = real_fdopen(handle, mode)

        def __enter__(self) -> Dying:
            return self

        def __exit__(self, *exc: object) -> None:
            self.file.close()

        def write(self, data: bytes) -> int:
            self.file.write(data[: len(data) // 2])
            self.file.flush()
            raise KeyboardInterrupt

    monkeypatch.setattr(os, "fdopen", Dying)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, "new content that never fully arrives\n" * 100)
    assert target.read_text() == "old content\n"
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]  # no temporary file left


def _interrupt_training(
    monkeypatch: pytest.MonkeyPatch, family_index: int, error: BaseException, epochs: int = 1
) -> None:
    """Make the `family_index`-th model's training raise `error` after `epochs` epochs
    (0: as it starts, before any epoch finished)."""
    real = pipeline.train_model
    calls = {"n": 0}

    def train_model(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == family_index + 1:
            if epochs == 0:
                raise error
            hooks, seen = args[-1], []

            def dying(row: dict) -> None:
                hooks.on_epoch(row)
                seen.append(row)
                if len(seen) == epochs:
                    raise error

            args = (*args[:-1], dataclasses.replace(hooks, on_epoch=dying))
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "train_model", train_model)


def test_interrupted_before_anything_finished_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _interrupt_training(monkeypatch, 0, KeyboardInterrupt(), epochs=0)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        pipeline.compare(dataset="digits", output=str(out), **MINI)
    assert not out.exists()  # it held nothing finished


def test_interrupted_after_an_epoch_keeps_it_for_resuming(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    _interrupt_training(monkeypatch, 0, KeyboardInterrupt(), epochs=1)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        pipeline.compare(dataset="digits", output=str(out), **MINI)
    run = load_run(out)
    assert run.status == "interrupted" and run.models["cnn"].status == "interrupted"
    assert len(run.models["cnn"].history) == 1 and not run.complete_models
    assert "--resume" in capsys.readouterr().err


def test_failure_after_the_cnn_finished_keeps_the_cnn(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    quick_figures: None,
) -> None:
    _interrupt_training(monkeypatch, 1, RuntimeError("simulated crash in the ViT"))
    out = tmp_path / "run"
    with pytest.raises(RuntimeError):
        pipeline.compare(dataset="digits", output=str(out), **MINI)
    run = load_run(out)
    assert run.status == "failed" and "simulated crash" in run.error
    assert run.models["cnn"].complete and run.models["vit"].status == "failed"
    assert len(run.models["vit"].history) == 1  # the epoch it finished is on record
    assert run.models["cnn"].predictions().correct.mean() == pytest.approx(
        run.models["cnn"].test["accuracy"]
    )
    assert any("ViT" in item and "failed" in item for item in run.missing)
    assert "kept the finished cnn model" in capsys.readouterr().err
    # The report of what it holds: the CNN's figures, no comparison, what is missing.
    facts = facts_from_run(run)
    assert (facts.status, list(facts.models), facts.both, facts.verdicts) == (
        "failed",
        ["cnn"],
        False,
        [],
    )
    assert facts.who["vit"] == "the ViT (vit-nano)"  # named though it did not finish
    assert main(["report", str(out)]) == 0 and (out / "report.html").is_file()


def test_ctrl_c_during_the_report_keeps_the_finished_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quick_figures: None
) -> None:
    def interrupted(run_dir: Path) -> Path:
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "build_report", interrupted)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        pipeline.compare(dataset="digits", output=str(out), **MINI)
    run = load_run(out)
    assert run.status == "complete" and set(run.complete_models) == {"cnn", "vit"}
    assert not (out / "report.html").exists()
    assert main(["report", str(out)]) == 0 and (out / "report.html").is_file()


@pytest.fixture
def unfrozen_heap() -> Iterator[None]:
    """No freeze of the test session's own (conftest's), for the duration of one test."""
    frozen = gc.get_freeze_count() > 0
    gc.unfreeze()
    try:
        yield
    finally:
        if frozen:
            gc.freeze()


def test_compare_freezes_the_heap_only_while_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unfrozen_heap: None
) -> None:
    seen: list[int] = []

    def train_model(*args: object, **kwargs: object) -> None:
        seen.append(gc.get_freeze_count())
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "train_model", train_model)
    with pytest.raises(KeyboardInterrupt):
        pipeline.compare(dataset="digits", output=str(tmp_path / "a"), **MINI)
    assert seen[0] > 0  # training ran with the import-time heap frozen
    assert gc.get_freeze_count() == 0  # and it is unfrozen again, even after a failure
    # Resuming runs frozen too: interrupt a run after its first epoch, then resume it.
    monkeypatch.undo()
    _interrupt_training(monkeypatch, 0, KeyboardInterrupt(), epochs=1)
    with pytest.raises(KeyboardInterrupt):
        pipeline.compare(dataset="digits", output=str(tmp_path / "c"), **MINI)
    monkeypatch.setattr(pipeline, "train_model", train_model)
    with pytest.raises(KeyboardInterrupt):
        pipeline.compare(resume=tmp_path / "c")
    assert len(seen) == 2 and seen[1] > 0 and gc.get_freeze_count() == 0
    gc.freeze()  # a caller that froze the heap itself keeps its freeze
    try:
        with pytest.raises(KeyboardInterrupt):
            pipeline.compare(dataset="digits", output=str(tmp_path / "b"), **MINI)
        assert seen[2] > 0 and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_evaluate_a_run_model_uses_the_runs_own_split(
    tiny_run: Path, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    out = tmp_path / "eval.json"
    # No dataset flags: the run's config (dataset, caps, split seed) decides the test split.
    assert main(["evaluate", str(tiny_run / "vit"), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    run = load_run(tiny_run)
    assert result["run"]["same_test_images"] is True
    # fp32 in the run and here: the same predictions, give or take one borderline image.
    one_image = 1.01 / TINY["max_eval_samples"]
    assert result["run"]["prediction_agreement"] >= 1 - one_image
    assert result["test"]["accuracy"] == pytest.approx(
        run.models["vit"].test["accuracy"], abs=one_image
    )


def test_evaluate_remaps_labels_by_name(tiny_run: Path, tmp_path: Path) -> None:
    """A model whose label ids are in another order scores the same after remapping."""
    import torch
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    source = tiny_run / "cnn"
    model = AutoModelForImageClassification.from_pretrained(source)
    order = [3, 7, 0, 9, 1, 5, 2, 8, 6, 4]  # new id i predicts old class order[i]
    head = model.classifier
    with torch.no_grad():
        head.weight.copy_(head.weight[order].clone())
        head.bias.copy_(head.bias[order].clone())
    model.config.id2label = {i: str(old) for i, old in enumerate(order)}
    model.config.label2id = {str(old): i for i, old in enumerate(order)}
    permuted = tmp_path / "permuted"
    model.save_pretrained(permuted)
    AutoImageProcessor.from_pretrained(source).save_pretrained(permuted)
    from cnnvit.config import DataConfig

    data = DataConfig(max_train_samples=TINY["max_train_samples"],
                      max_eval_samples=TINY["max_eval_samples"])  # fmt: skip
    plain = rescoring.evaluate_saved_model(source, data, precision="fp32")
    shuffled = rescoring.evaluate_saved_model(permuted, data, precision="fp32")
    assert shuffled["test"]["accuracy"] == pytest.approx(plain["test"]["accuracy"])
    assert rescoring.label_remap(["a", "b", "c"], ["c", "a", "b"]).tolist() == [1, 2, 0]


def test_saved_models_reload_from_their_folder_alone(tiny_run: Path) -> None:
    """Auto classes and transformers' pipeline() load a run's model folders and give back the
    run's own test predictions (fp32 in the run and here)."""
    from PIL import Image
    from transformers import pipeline as hf_pipeline

    run = load_run(tiny_run)
    data = run.prepare_data()
    for family in ("cnn", "vit"):
        record = run.models[family]
        card = (record.path / "README.md").read_text()
        # The run's own accuracy, as the card's writer formats it (cnnvit.formatting).
        assert f"value: {metric_value(record.test['accuracy'])}" in card
        model, processor = record.load()
        images, _ = data.tensors("test", processor)
        assert np.array_equal(data.example_ids("test", processor), record.predictions().ids)
        classifier = hf_pipeline("image-classification", model=str(record.path), device="cpu")
        pictures = [Image.fromarray(image.permute(1, 2, 0).numpy()) for image in images]
        labels = [out[0]["label"] for out in classifier(pictures, top_k=1)]
        predicted = np.array([model.config.label2id[label] for label in labels])
        assert (predicted == record.predictions().predicted).mean() >= 0.97
