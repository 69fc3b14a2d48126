"""The demo's Python side: predictions against Hugging Face's own pipeline, explanation overlays
by hand, concurrent requests, one model load, non-image uploads, and `compare --json --quiet`."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from hands_on import hands_on_run
from PIL import Image

from cnnvit.demo import DemoModels, predict_both
from cnnvit.demo.predict import open_image, overlay
from cnnvit.errors import CnnvitError
from cnnvit.runs import ModelRecord, load_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return hands_on_run(tmp_path_factory).path


@pytest.fixture(scope="module")
def models(run_dir: Path) -> DemoModels:
    return DemoModels(load_run(run_dir), device="cpu")


@pytest.fixture(scope="module")
def test_images(run_dir: Path, models: DemoModels) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's own test images (uint8 (N, 3, 16, 16)) and labels."""
    data = load_run(run_dir).prepare_data()
    return data.tensors("test", models.models["cnn"].processor)


def digit_png(path: Path, index: int = 0, side: int = 64) -> Path:
    """A scikit-learn digit (8x8, values 0..16) enlarged to a side x side grey PNG."""
    from sklearn.datasets import load_digits

    pixels = (load_digits().images[index] * (255 / 16)).astype(np.uint8)
    Image.fromarray(pixels).resize((side, side), Image.BILINEAR).save(path)
    return path


def test_predictions_match_huggingface_processor_and_model(models, tmp_path) -> None:
    """predict_both's route (uint8 resize, batch normalisation) against transformers' own
    processor on the saved model, for an upload at another size than the models'."""
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    path = digit_png(tmp_path / "digit.png", index=3)
    result = predict_both(models, path)
    image = Image.open(path).convert("RGB")
    for family in ("cnn", "vit"):
        folder = models.run.models[family].path
        model = AutoModelForImageClassification.from_pretrained(folder).eval()
        inputs = AutoImageProcessor.from_pretrained(folder)(images=image, return_tensors="pt")
        with torch.no_grad():
            expected = model(**inputs).logits.softmax(1)[0]
        top = result[family]["top"]
        assert len(top) == 5
        values, indices = expected.topk(5)
        # HF keeps the resized pixels as floats; the run rounds them to uint8 (<= 0.5/255).
        assert [item["label"] for item in top][:1] == [model.config.id2label[int(indices[0])]]
        for item in top:
            label_id = model.config.label2id[item["label"]]
            assert item["probability"] == pytest.approx(float(expected[label_id]), abs=2e-3)
        assert [item["probability"] for item in top] == sorted(
            (item["probability"] for item in top), reverse=True
        )
        assert result[family]["predicted"] == top[0]["label"]


def test_test_images_agree_with_the_runs_saved_predictions(models, run_dir, test_images) -> None:
    """On the run's own test images the demo gives the probabilities the run saved. The run may
    have used bf16 (CPUs with native bf16), the demo fp32: equal within bf16's rounding, and the
    same class wherever the saved top two are further apart than that."""
    images, labels = test_images
    saved = {f: load_run(run_dir).models[f].predictions() for f in ("cnn", "vit")}
    decided = 0
    for position in range(30):
        picture = images[position].permute(1, 2, 0).numpy()
        result = predict_both(models, picture, top_k=10)
        for family, predictions in saved.items():
            assert predictions.labels[position] == labels[position]
            expected = torch.from_numpy(predictions.logits[position]).softmax(0)
            names = models.models[family].model.config.id2label
            for item in result[family]["top"]:
                label_id = [k for k, v in names.items() if v == item["label"]][0]
                assert item["probability"] == pytest.approx(float(expected[label_id]), abs=0.02)
            top2 = expected.topk(2).values
            if float(top2[0] - top2[1]) > 0.04:
                assert result[family]["predicted"] == names[int(expected.argmax())]
                decided += 1
    assert decided >= 10


def test_overlay_by_hand() -> None:
    """A flat map is scaled to 0 (jet's dark blue, (0, 0, 0.5)), mixed half and half with grey."""
    pixels = torch.full((3, 2, 2), 100, dtype=torch.uint8)
    flat = overlay(pixels, torch.zeros(2, 2))
    expected = np.rint((0.5 * 100 / 255 + 0.5 * np.array([0.0, 0.0, 0.5])) * 255)
    assert (flat == expected.astype(np.uint8)).all()
    ramp = overlay(pixels, torch.tensor([[0.0, 1.0], [2.0, 4.0]]))
    # jet at 1 is dark red (0.5, 0, 0): the hottest pixel is red, the coldest blue.
    assert ramp[1, 1, 0] > ramp[1, 1, 2] and ramp[0, 0, 2] > ramp[0, 0, 0]


def test_explanation_maps_point_somewhere(models, tmp_path) -> None:
    maps = models.explain(digit_png(tmp_path / "digit.png", index=5))
    for family in ("cnn", "vit"):
        assert maps[family].shape == (16, 16, 3) and maps[family].dtype == np.uint8
        assert maps[family].std() > 0  # not a flat map


def test_concurrent_requests_give_the_sequential_answers(models, test_images) -> None:
    images = [test_images[0][i].permute(1, 2, 0).numpy() for i in range(6)]
    sequential = [(models.predict(x), models.explain(x)) for x in images]

    def both(x: np.ndarray) -> tuple:
        return models.predict(x), models.explain(x)

    with ThreadPoolExecutor(max_workers=6) as pool:
        concurrent = list(pool.map(both, images * 2))
    for index, (prediction, maps) in enumerate(concurrent):
        expected_prediction, expected_maps = sequential[index % len(images)]
        assert prediction == expected_prediction
        for family in ("cnn", "vit"):
            assert np.array_equal(maps[family], expected_maps[family])


def test_models_load_once(run_dir, monkeypatch, tmp_path) -> None:
    from cnnvit.demo import predict as predict_module

    calls: list[str] = []
    original = ModelRecord.load
    lock = threading.Lock()

    def counting(self: ModelRecord, *args, **kwargs):
        with lock:
            calls.append(self.family)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ModelRecord, "load", counting)
    monkeypatch.setattr(predict_module, "_LOADED", {})
    path = digit_png(tmp_path / "d.png")
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda _: predict_both(run_dir, path), range(4)))
    predict_both(str(run_dir), path)
    assert sorted(calls) == ["cnn", "vit"]


def test_non_images_are_refused_in_one_line(models, tmp_path) -> None:
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    for source in (text, b"GIF89a-truncated", str(tmp_path / "missing.jpg")):
        with pytest.raises(CnnvitError, match="is not an image this demo can read") as info:
            predict_both(models, source)
        assert "\n" not in str(info.value)
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # transparent: composited on white
    assert open_image(rgba).getpixel((0, 0)) == (255, 255, 255)


def test_compare_json_and_quiet(tmp_path_factory) -> None:
    """The shared run was made with `compare --json --quiet`: stdout is only the JSON summary,
    stderr holds no progress or log lines, and the summary agrees with run.json."""
    made = hands_on_run(tmp_path_factory)
    summary = json.loads(made.stdout)
    run = load_run(made.path)
    assert summary["run_dir"] == str(run.path) and summary["status"] == "complete"
    assert summary["report"] == str(run.path / "report.html") and Path(summary["report"]).is_file()
    for family in ("cnn", "vit"):
        assert summary["models"][family]["test_accuracy"] == run.models[family].test["accuracy"]
        assert summary["models"][family]["name"] == run.models[family].name
    assert summary["comparison"] == run.comparison
    assert made.stderr.strip() == ""


def test_demo_command_refuses_what_it_cannot_serve(tmp_path, capsys) -> None:
    from cnnvit.cli import main

    assert main(["demo", str(tmp_path / "no-such-run")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cnnvit: error: run directory") and err.count("\n") == 1
    (tmp_path / "not-a-run").mkdir()
    assert main(["demo", str(tmp_path / "not-a-run")]) == 1
    assert "no run.json" in capsys.readouterr().err


def test_report_command_prints_the_path_once(tmp_path_factory, capsys, quick_figures) -> None:
    from cnnvit.cli import main

    run_dir = hands_on_run(tmp_path_factory).path
    assert main(["report", str(run_dir)]) == 0
    assert capsys.readouterr().out == f"report: {run_dir / 'report.html'}\n"
