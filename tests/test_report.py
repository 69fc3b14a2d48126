"""Tests of the report: built from a real run directory (a tiny compare) read through the
loader, whose recorded figures each test sets to a known case."""

from __future__ import annotations

import json
import re
import shutil
import struct
from pathlib import Path

import pytest
from conftest import MINI

from cnnvit.errors import CnnvitError
from cnnvit.pipeline import compare
from cnnvit.report import build_report

CLASSES = ["cat", "dog", "bird"]
FIGURES = ("learning_curves", "confusion_matrices", "per_class_f1", "accuracy_vs_cost")


def _model(name: str, family: str, accuracy: float, lr: float, per_class_test: int) -> dict:
    """One model's metrics block with `accuracy` on a test set of 3 x per_class_test images."""
    n = len(CLASSES)
    correct = round(accuracy * n * per_class_test)
    matrix = [[0] * n for _ in range(n)]
    for i in range(n):  # spread the correct answers over the classes, errors go to the next class
        right = correct // n + (1 if i < correct % n else 0)
        matrix[i][i] = right
        matrix[i][(i + 1) % n] = per_class_test - right
    history = []
    for epoch in range(1, 5):
        # the ViT starts lower and climbs faster, as small ViTs from scratch tend to
        val = accuracy * ((0.6 + 0.1 * epoch) if family == "vit" else (0.85 + 0.04 * epoch))
        loss = (1.0 if family == "vit" else 0.8) / epoch
        history.append(
            {
                "epoch": epoch,
                "train_loss": loss,
                "train_accuracy": val + 0.02,
                "val_loss": loss + 0.1,
                "val_accuracy": val,
                "seconds": 2.0,
                "lr": lr,
            }
        )
    f1 = [0.95, 0.85, 0.75] if family == "vit" else [0.95, 0.95, 0.95]
    per_class = [
        {"class": c, "precision": 0.9, "recall": 0.9, "f1": f1[i], "support": per_class_test}
        for i, c in enumerate(CLASSES)
    ]
    return {
        "name": name, "family": family, "source": "preset", "pretrained": False,
        "params": 1_200_000 if family == "cnn" else 1_500_000,
        "flops_per_image": 40_000_000 if family == "cnn" else 90_000_000,
        "history": history, "best_epoch": 4,
        "training": {"lr": lr, "epochs": 4, "batch_size": 64, "precision": "bf16",
                     "memory_format": "channels_last" if family == "cnn" else "contiguous",
                     "attention": "sdpa" if family == "vit" else None, "compiled": False,
                     "device": "cuda"},
        "test": {"accuracy": correct / (n * per_class_test), "top5_accuracy": 1.0,
                 "macro_f1": accuracy - 0.01, "loss": 0.4, "per_class": per_class,
                 "confusion_matrix": matrix},
        "efficiency": {"train_seconds": 30.0 if family == "cnn" else 45.0,
                       "train_images_per_second": 2000.0 if family == "cnn" else 1300.0,
                       "inference_images_per_second": 9000.0 if family == "cnn" else 6000.0,
                       "latency_ms_batch1": 2.0 if family == "cnn" else 3.1,
                       "peak_memory_mb": 800.0},
    }  # fmt: skip


def make_run(tmp_path: Path, source: Path, cnn_acc: float = 0.90, vit_acc: float = 0.93,
             p: float = 0.21, vit_lr: float = 5e-4, name: str = "run") -> Path:  # fmt: skip
    """A copy of a real run whose run.json records a known case: 100 test images per class."""
    run = tmp_path / name
    shutil.copytree(source, run)
    for stale in ("report.md", "report.html"):
        (run / stale).unlink()
    record = json.loads((run / "run.json").read_text())
    models = {"cnn": _model("convnext-micro", "cnn", cnn_acc, 5e-4, 100),
              "vit": _model("vit-micro", "vit", vit_acc, vit_lr, 100)}  # fmt: skip
    size = 300
    delta = round((vit_acc - cnn_acc) * size)  # only_vit - only_cnn, in images
    only_cnn, only_vit = 6 + max(0, -delta), 6 + max(0, delta)
    record["dataset"] = {"name": "pets", "num_classes": 3, "class_names": CLASSES,
                         "splits": {"train": 2400, "validation": 300, "test": size},
                         "class_counts": {}, "unreadable_images": {}}  # fmt: skip
    record["models"] = {k: {**m, "status": "complete"} for k, m in models.items()}
    record["comparison"] = {
        "test_size": size, "both_correct": round(cnn_acc * size) - only_cnn,
        "only_cnn_correct": only_cnn, "only_vit_correct": only_vit,
        "both_wrong": size - round(cnn_acc * size) - only_vit, "mcnemar_p_value": p,
        "accuracy_difference_points": 100 * (vit_acc - cnn_acc),
    }  # fmt: skip
    record["environment"] = {"device": "cuda (NVIDIA H100)", "threads": 16, "torch": "2.9.0",
                             "transformers": "5.0.0", "cnnvit": "0.1.0",
                             "git_commit": "abc1234", "python": "3.11.2", "platform": "Linux",
                             "cpu": "x86_64", "timestamp": "2025-01-01T00:00:00+00:00"}  # fmt: skip
    config = record["config"]
    config["data"]["dataset"] = "pets"
    config["train"].update(epochs=4, batch_size=64, lr=5e-4, weight_decay=0.05,
                           warmup_fraction=0.1, label_smoothing=0.1, augment=True)  # fmt: skip
    (run / "run.json").write_text(json.dumps(record))
    return run


def _edit(run: Path, change) -> None:  # noqa: ANN001 - a function of the record
    record = json.loads((run / "run.json").read_text())
    change(record)
    (run / "run.json").write_text(json.dumps(record))


def _reflection(run: Path) -> str:
    text = (run / "report.md").read_text()
    return text[text.index("## Reflection") : text.index("## Environment")]


@pytest.fixture(scope="module")
def vit_wins(tmp_path_factory: pytest.TempPathFactory, tiny_run: Path) -> Path:
    """ViT ahead by 3.0 points, p = 0.21 (not significant), same lr for both."""
    run = make_run(tmp_path_factory.mktemp("report"), tiny_run)
    assert build_report(run) == run / "report.html"
    return run


def test_figures_are_real_pngs(vit_wins: Path) -> None:
    for name in FIGURES:
        data = (vit_wins / "figures" / f"{name}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", name
        width, height = struct.unpack(">II", data[16:24])
        assert width > 300 and height > 200 and len(data) > 10_000, name


def test_files_written_atomically_no_temp_left(vit_wins: Path) -> None:
    leftovers = [p.name for p in vit_wins.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_html_is_self_contained(vit_wins: Path) -> None:
    page = (vit_wins / "report.html").read_text()
    sources = re.findall(r'<img[^>]*\ssrc="([^"]*)"', page)
    assert len(sources) == len(FIGURES)
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r'(href|src)="(?!data:)', page)  # no link to any other file
    assert "<style>" in page and "<table>" in page


def test_markdown_references_figures(vit_wins: Path) -> None:
    text = (vit_wins / "report.md").read_text()
    assert text.startswith("# CNN vs ViT on pets")
    for name in FIGURES:
        assert f"](figures/{name}.png)" in text


def test_winner_and_margin(vit_wins: Path) -> None:
    reflection = _reflection(vit_wins)
    sentence = next(s for s in reflection.split(". ") if "won on test accuracy" in s)
    assert "vit-micro" in sentence and "3.0 points" in sentence
    assert sentence.index("vit-micro") < sentence.index("won")  # the ViT is the subject
    assert "convnext-micro) won" not in reflection


def test_not_significant_says_so(vit_wins: Path) -> None:
    reflection = _reflection(vit_wins)
    assert "not significant: from one run on this test set it is inconclusive, leaning ViT" in (
        reflection
    )
    assert "p = 0.210" in reflection
    assert "does not measure seed-to-seed variation" in reflection
    page = (vit_wins / "report.html").read_text()
    assert "it is inconclusive, leaning ViT" in page  # html carries the same text


def test_same_lr_stated(vit_wins: Path) -> None:
    text = (vit_wins / "report.md").read_text()
    assert "Both models used the same learning rate (0.0005) and the same recipe." in text


def test_ratio_column(vit_wins: Path) -> None:
    text = (vit_wins / "report.md").read_text()
    assert "ratio (ViT/CNN)" in text
    assert "| FLOPs / image | 40.00 M | 90.00 M | 2.25× |" in text


def test_significant_does_not_say_too_small(tmp_path: Path, tiny_run: Path) -> None:
    run = make_run(tmp_path, tiny_run, cnn_acc=0.95, vit_acc=0.85, p=0.001)
    build_report(run)
    reflection = _reflection(run)
    assert "inconclusive, leaning" not in (run / "report.md").read_text()
    sentence = next(s for s in reflection.split(". ") if "won on test accuracy" in s)
    assert "convnext-micro" in sentence and "10.0 points" in sentence
    assert "does not measure seed-to-seed variation" in reflection
    # The claims go through the evidence engine: a significant 10-point CNN lead on 2,400
    # training images supports the data-efficiency claim, for this one run.
    assert (
        "CNNs are more data-efficient (more accurate with few training images): **supported**"
        in (reflection)
    )


def test_per_family_learning_rates(tmp_path: Path, tiny_run: Path) -> None:
    run = make_run(tmp_path, tiny_run, vit_lr=1e-3)
    build_report(run)
    text = (run / "report.md").read_text()
    sentence = next(line for line in text.splitlines() if "per-family learning rates" in line)
    assert "0.0005 for the CNN" in sentence and "0.001 for the ViT" in sentence
    assert "same learning rate" not in text


def test_setup_says_what_each_model_tried_got_and_why(tmp_path: Path, tiny_run: Path) -> None:
    run = make_run(tmp_path, tiny_run, vit_lr=1e-3)
    trials = [
        {"lr": lr, "round": r, "images_trained": 500 * r, "val_accuracy": acc, "val_loss": 0.5}
        for lr, r, acc in ((5e-4, 1, 0.60), (1e-3, 1, 0.70), (1e-3, 2, 0.81), (5e-4, 2, 0.80))
    ]

    def tuned(record: dict) -> None:
        for family, spent in (("cnn", 2000), ("vit", 2000)):
            chosen = 5e-4 if family == "cnn" else 1e-3
            record["models"][family]["tuning"] = {
                "chosen_lr": chosen, "trials": trials, "images_used": spent,
                "method": "successive halving", "reason": f"{family} reason {chosen:g}",
            }  # fmt: skip

    _edit(run, tuned)
    build_report(run)
    lines = (run / "report.md").read_text().splitlines()
    assert "- CNN (convnext-micro): 0.0005, because cnn reason 0.0005." in lines
    assert "- ViT (vit-micro): 0.001, because vit reason 0.001." in lines
    rows = [line for line in lines if re.match(r"\| (CNN|ViT) \| \d \|", line)]
    assert len(rows) == 8 and "| CNN | 1 | 0.0005 | 500 | 60.0% | 0.5000 |  |" in rows
    # "chosen" marks the chosen rate in the last round only.
    assert [r for r in rows if "chosen" in r] == [
        "| CNN | 2 | 0.0005 | 1,000 | 80.0% | 0.5000 | chosen |",
        "| ViT | 2 | 0.001 | 1,000 | 81.0% | 0.5000 | chosen |",
    ]
    budget = "Both models spent the same tuning budget: 2,000 training images each."
    assert any(budget in line for line in lines)

    def unequal(record: dict) -> None:
        record["models"]["vit"]["tuning"]["images_used"] = 3000

    _edit(run, unequal)
    build_report(run)
    text = (run / "report.md").read_text()
    assert "Tuning budgets (training images): CNN 2,000, ViT 3,000." in text
    assert "same tuning budget" not in text


def test_setup_says_when_each_model_was_regularised(tmp_path: Path, tiny_run: Path) -> None:
    run = make_run(tmp_path, tiny_run)

    def progressive(record: dict) -> None:  # the ViT's rows record a rising share, the CNN's none
        for family, shares in (("cnn", [0] * 4), ("vit", [0, 1 / 3, 2 / 3, 1])):
            model = record["models"][family]
            model["training"].update(label_smoothing=0.05, augment_strength=0.5,
                                     warmup_fraction=0.1, weight_decay=0.05)  # fmt: skip
            for row, share in zip(model["history"], shares, strict=True):
                row["regularised"], row["regularisation"] = share > 0, share

    _edit(run, progressive)
    build_report(run)
    text = (run / "report.md").read_text()
    used = "label smoothing and augmentation used"
    row = next(line for line in text.splitlines() if used in line)
    assert (
        "CNN: none" in row and "ViT: from epoch 2 (33% of full strength) to epoch 4 (100%)" in row
    )
    assert "| label smoothing | 0.05 |" in text and "strength 0.50" in text

    # Real runs: a 2-epoch run with the defaults (s = 0) has no label smoothing or
    # augmentation; one given a number for label smoothing has it at full strength throughout.
    short = compare(dataset="digits", output=str(tmp_path / "short"),
                    **{**MINI, "label_smoothing": "auto"})  # fmt: skip
    row = next(line for line in (short / "report.md").read_text().splitlines() if used in line)
    assert "| none |" in row, row
    row = next(line for line in (tiny_run / "report.md").read_text().splitlines() if used in line)
    assert "| every epoch, at full strength |" in row, row


def test_not_a_run_raises(tmp_path: Path) -> None:
    with pytest.raises(CnnvitError, match="no run.json"):
        build_report(tmp_path)
    with pytest.raises(CnnvitError, match="does not exist"):
        build_report(tmp_path / "nowhere")
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(CnnvitError, match="not valid JSON"):
        build_report(tmp_path)


def test_pretrained_large_data_and_missing_values(tmp_path: Path, tiny_run: Path) -> None:
    """A pretrained hub ViT on 50k images, some measurements null, no comparison recorded."""
    run = make_run(tmp_path, tiny_run)

    def change(record: dict) -> None:
        record["dataset"]["splits"]["train"] = 50_000
        vit = record["models"]["vit"]
        vit.update(name="google/vit-base-patch16-224", source="hub", pretrained=True,
                   params=86_000_000)  # fmt: skip
        vit["efficiency"]["peak_memory_mb"] = None
        record["comparison"] = None

    _edit(run, change)
    build_report(run)
    text = (run / "report.md").read_text()
    assert "| peak memory MB | 800 | n/a | n/a |" in text
    assert "whether it is meaningful is unknown" in text
    claims = text[text.index("### The usual claims") :]
    # 50,000 images is not small data; 71.67x the parameters is not "equal parameters".
    assert (
        "CNNs are more data-efficient (more accurate with few training images): **not tested**"
        in (claims)
    )
    assert "CNNs need fewer FLOPs per image at equal parameters: **not tested**" in claims
    assert "(google/vit-base-patch16-224) started from pretrained weights" in text


def test_cost_differences_within_timing_noise_are_not_wins(
    tmp_path: Path, vit_wins: Path, tiny_run: Path
) -> None:
    assert "was cheaper to train (30.0 s against 45.0 s)" in _reflection(vit_wins)
    run = make_run(tmp_path, tiny_run)
    _edit(run, lambda r: r["models"]["vit"]["efficiency"].update(
        {"train_seconds": 30.5, "inference_images_per_second": 9100.0, "latency_ms_batch1": 2.1}
    ))  # fmt: skip
    build_report(run)
    reflection = _reflection(run)
    assert "cheaper to train" not in reflection and "about as long to train" in reflection
    assert "Both cost about the same to run" in reflection


def test_learning_speed_needs_more_than_an_epoch_to_name_a_winner(
    tmp_path: Path, tiny_run: Path
) -> None:
    run = make_run(tmp_path, tiny_run)
    metrics = json.loads((run / "run.json").read_text())
    for family in ("cnn", "vit"):  # 20 epochs, val accuracy rising linearly to 0.9
        rows = metrics["models"][family]["history"]
        metrics["models"][family]["history"] = [
            {**rows[0], "epoch": e, "val_accuracy": 0.9 * min(1.0, e / 10)} for e in range(1, 21)
        ]
    vit = metrics["models"]["vit"]["history"]
    vit[9]["val_accuracy"] = 0.84  # the ViT reaches 95% of its best one epoch later
    (run / "run.json").write_text(json.dumps(metrics))
    build_report(run)
    assert "Both learned at about the same speed" in _reflection(run)
    for row in vit[:14]:  # now six epochs later: a real difference
        row["val_accuracy"] = 0.5
    (run / "run.json").write_text(json.dumps(metrics))
    build_report(run)
    assert "The CNN (convnext-micro) learned faster." in _reflection(run)


def test_an_unmatched_pair_is_called_unmatched_with_its_ratio(
    tmp_path: Path, tiny_run: Path
) -> None:
    """run.json's pairing says the pair missed --match flops: the report's setup and every
    verdict's scope call it unmatched with the ratio, and nothing says it was matched."""
    from cnnvit.evidence import cell_from_run, judge_claims
    from cnnvit.runs import load_run

    run = make_run(tmp_path, tiny_run)

    def unmatched(record: dict) -> None:
        record["pairing"] = {"cnn": "convnext-micro", "vit": "vit-micro", "vit_patch_size": 4,
                             "params_ratio": 0.95, "flops_ratio": 1.97,
                             "match": {"on": "flops", "ratio": 1.97, "tolerance": 0.15,
                                       "met": False}}  # fmt: skip

    _edit(run, unmatched)
    build_report(run)
    text = (run / "report.md").read_text()
    sentence = next(line for line in text.splitlines() if "The pair is" in line)
    assert "unmatched on FLOPs per image (--match flops)" in sentence and "1.97×" in sentence
    assert "15% tolerance" in sentence and "matched on" not in sentence.replace("unmatched", "")
    verdicts = judge_claims([cell_from_run(load_run(run))])
    assert all("unmatched on FLOPs per image (ViT/CNN 1.97x, tolerance 15%)" in v.scope
               for v in verdicts)  # fmt: skip
    # Met: the setup names the match and its tolerance, and no scope says unmatched.
    _edit(run, lambda r: r["pairing"].update(match={**r["pairing"]["match"], "on": "params",
                                                    "ratio": 0.95, "met": True},
                                             matched_on="params"))  # fmt: skip
    build_report(run)
    text = (run / "report.md").read_text()
    assert "matched on parameter count (--match params, within 15%)" in text
    assert not any("unmatched" in v.scope for v in judge_claims([cell_from_run(load_run(run))]))


def test_a_probe_run_compares_no_training_times(tmp_path: Path, tiny_run: Path) -> None:
    """--adapt probe trains a classifier on cached frozen features: the report neither calls
    one model cheaper to train nor judges the training-cost claims (issue 28 point 1)."""
    run = make_run(tmp_path, tiny_run)

    def probe(record: dict) -> None:
        record["config"]["train"]["adapt"] = "probe"
        for family in ("cnn", "vit"):
            record["models"][family].update(
                source="local", pretrained=True,
                pretraining={"data": "imagenet-1k", "source": "--pretraining"})  # fmt: skip

    _edit(run, probe)
    build_report(run)
    reflection = _reflection(run)
    assert "cheaper to train" not in reflection and "about as long to train" not in reflection
    assert "training times and throughputs are the probe's, not the models'" in reflection
    claims = reflection[reflection.index("### The usual claims") :]
    assert "CNNs take less time to train at equal parameters: **not tested**" in claims
    assert "there is no model training to time" in claims
    assert "CNNs have higher inference throughput at equal parameters: **not tested**" not in claims
