"""Tests of the report: a real run directory (the shared tiny compare) whose recorded figures
each test sets to a known case, read through the loader. The tests assert the facts the report
states (`RunFacts`, the evidence engine's `Verdict` fields, the reflection's decisions and the
setup table's values); one test checks that report.md and report.html say them through the
functions that word them, and the files' form (figures, self-contained HTML) is checked once."""

from __future__ import annotations

import html
import json
import re
import shutil
import struct
from pathlib import Path

import pytest
from conftest import MINI

from cnnvit.errors import CnnvitError
from cnnvit.evidence import Verdict, verdict_sentence
from cnnvit.pipeline import compare
from cnnvit.report import build_report
from cnnvit.report.assemble import _content, _per_model, _regularised_from, _setup, _tuning
from cnnvit.report.facts import RunFacts, facts_from_run
from cnnvit.report.reflection import (
    accuracy_sentences,
    caveats,
    cheaper_to_run,
    cheaper_to_train,
    cost_text,
    faster_learner,
    overfit_text,
    speed_text,
)
from cnnvit.runs import load_run

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


def _facts(run: Path) -> RunFacts:
    return facts_from_run(load_run(run))


def _verdict(facts: RunFacts, claim_id: str) -> Verdict:
    return next(v for v in facts.verdicts if v.claim_id == claim_id)


def _table(blocks: list, first_header: str) -> list[list[str]]:
    """The rows of the first table block whose header starts with `first_header`."""
    return next(b[2] for b in blocks if b[0] == "table" and b[1][0] == first_header)


def _results(facts: RunFacts) -> list[list[str]]:
    """The rows of the report's Results table (the one whose first row is the parameters)."""
    tables = [b[2] for b in _content(facts, {}) if b[0] == "table" and b[2]]
    return next(rows for rows in tables if rows[0][0] == "parameters")


@pytest.fixture(scope="module")
def vit_wins(tmp_path_factory: pytest.TempPathFactory, tiny_run: Path) -> Path:
    """ViT ahead by 3.0 points, p = 0.21 (not significant), same lr for both; its report built
    with the real figures."""
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


def test_the_report_says_its_facts_through_the_functions_that_word_them(vit_wins: Path) -> None:
    """The compare report's one rendering check: each reflection paragraph, verdict line and
    caveat, and the setup and results tables, are in report.md as the functions that word them
    from the run's facts write them; report.html carries the same text."""
    facts = _facts(vit_wins)
    text = (vit_wins / "report.md").read_text()
    page = (vit_wins / "report.html").read_text()
    assert text.startswith(f"# CNN vs ViT on {facts.name}\n")
    for name in FIGURES:
        assert f"](figures/{name}.png)" in text
    accuracy = " ".join(s for s in accuracy_sentences(facts) if s)
    for paragraph in (accuracy, cost_text(facts), speed_text(facts), overfit_text(facts)):
        assert f"\n{paragraph}\n" in text
    assert f"<p>{html.escape(accuracy)}</p>" in page
    for line in [*(verdict_sentence(v) for v in facts.verdicts), *caveats(facts)]:
        assert f"\n- {line}" in text
    for block in _setup(facts):
        assert block[0] != "p" or f"\n{block[1]}\n" in text
    for row in [*_table(_setup(facts), "setting"), *_results(facts)]:
        assert "| " + " | ".join(row) + " |" in text
    assert facts.ratio["flops"] == pytest.approx(2.25)
    assert ["FLOPs / image", "40.00 M", "90.00 M", "2.25×"] in _results(facts)


def test_accuracy_winner_margin_and_significance(vit_wins: Path, tmp_path: Path,
                                                 tiny_run: Path) -> None:  # fmt: skip
    """ViT ahead by 3.0 points at p = 0.21: not significant, yet the interval rules out the
    CNN lead the data-efficiency claim needs, so it is contradicted, leaning ViT; a 10-point CNN
    lead at p = 0.001 on 2,400 training images supports it."""
    facts = _facts(vit_wins)
    assert facts.diff == pytest.approx(3.0) and facts.p == pytest.approx(0.21)
    assert facts.acc == pytest.approx({"cnn": 0.90, "vit": 0.93})
    assert facts.who == {"cnn": "the CNN (convnext-micro)", "vit": "the ViT (vit-micro)"}
    data = _verdict(facts, "data_efficiency")
    assert (data.outcome, data.direction, data.rule) == ("contradicted", "leans ViT", "ruled_out")
    assert data.p_value is not None and data.p_value >= 0.05
    oriented = data.oriented  # CNN - ViT, the claim's direction
    assert oriented is not None and oriented.estimate < 0 and oriented.high < data.threshold
    run = make_run(tmp_path, tiny_run, cnn_acc=0.95, vit_acc=0.85, p=0.001)
    facts = _facts(run)
    assert facts.diff == pytest.approx(-10.0) and facts.p == pytest.approx(0.001)
    data = _verdict(facts, "data_efficiency")
    assert (data.outcome, data.direction) == ("supported", "leans CNN")
    assert data.p_adjusted is not None and data.p_adjusted < 0.05


def test_learning_rates_read_per_model(vit_wins: Path, tmp_path: Path, tiny_run: Path) -> None:
    lrs = {k: m["training"]["lr"] for k, m in _facts(vit_wins).models.items()}
    assert lrs == {"cnn": 5e-4, "vit": 5e-4}
    facts = _facts(make_run(tmp_path, tiny_run, vit_lr=1e-3))
    assert {k: m["training"]["lr"] for k, m in facts.models.items()} == {"cnn": 5e-4, "vit": 1e-3}


def test_setup_lists_what_each_model_tried_got_and_why(tmp_path: Path, tiny_run: Path) -> None:
    run = make_run(tmp_path, tiny_run, vit_lr=1e-3)
    trials = [
        {"lr": lr, "round": r, "images_trained": 500 * r, "val_accuracy": acc, "val_loss": 0.5}
        for lr, r, acc in ((5e-4, 1, 0.60), (1e-3, 1, 0.70), (1e-3, 2, 0.81), (5e-4, 2, 0.80))
    ]

    def tuned(record: dict) -> None:
        for family in ("cnn", "vit"):
            chosen = 5e-4 if family == "cnn" else 1e-3
            record["models"][family]["tuning"] = {
                "chosen_lr": chosen, "trials": trials, "images_used": 2000,
                "method": "successive halving", "reason": f"{family} reason {chosen:g}",
            }  # fmt: skip

    _edit(run, tuned)
    facts = _facts(run)
    assert facts.models["vit"]["tuning"]["chosen_lr"] == 1e-3
    blocks = _tuning(facts)
    assert blocks[1] == ("ul", ["CNN (convnext-micro): 0.0005, because cnn reason 0.0005.",
                                "ViT (vit-micro): 0.001, because vit reason 0.001."])  # fmt: skip
    rows = _table(blocks, "model")
    assert len(rows) == 8 and ["CNN", "1", "0.0005", "500", "60.0%", "0.5000", ""] in rows
    # "chosen" marks the chosen rate in the last round only.
    assert [r for r in rows if r[-1] == "chosen"] == [
        ["CNN", "2", "0.0005", "1,000", "80.0%", "0.5000", "chosen"],
        ["ViT", "2", "0.001", "1,000", "81.0%", "0.5000", "chosen"],
    ]


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
    facts = _facts(run)
    assert _regularised_from(facts) == (
        "CNN: none; ViT: from epoch 2 (33% of full strength) to epoch 4 (100%)"
    )
    assert _per_model(facts, "training.label_smoothing", "g", None) == "0.05"
    assert _per_model(facts, "training.augment_strength", ".2f", None) == "0.50"

    # Real runs: a 2-epoch run with the defaults (s = 0) has no label smoothing or
    # augmentation; one given a number for label smoothing has it at full strength throughout.
    short = compare(dataset="digits", output=str(tmp_path / "short"), report=False,
                    **{**MINI, "label_smoothing": "auto"})  # fmt: skip
    assert _regularised_from(_facts(short)) == "none"
    assert _regularised_from(_facts(tiny_run)) == "every epoch, at full strength"


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
    facts = _facts(run)
    assert facts.p is None and facts.n_train == 50_000
    assert facts.diff == pytest.approx(3.0)  # from the two test accuracies
    assert ["peak memory MB", "800", "n/a", "n/a"] in _results(facts)
    # 50,000 images is not small data; 71.67x the parameters is not "equal parameters".
    assert facts.ratio["params"] == pytest.approx(86 / 1.2)
    for claim in ("data_efficiency", "cheaper_flops"):
        verdict = _verdict(facts, claim)
        assert (verdict.outcome, verdict.evidence) == ("not tested", None) and verdict.reason
    assert facts.models["vit"]["pretrained"] and not facts.models["cnn"]["pretrained"]


def test_cost_differences_within_timing_noise_are_not_wins(
    tmp_path: Path, vit_wins: Path, tiny_run: Path
) -> None:
    facts = _facts(vit_wins)  # 30 s against 45 s; latency 2.0 against 3.1 ms; 9,000 vs 6,000/s
    assert (cheaper_to_train(facts), cheaper_to_run(facts)) == ("cnn", "cnn")
    run = make_run(tmp_path, tiny_run)
    _edit(run, lambda r: r["models"]["vit"]["efficiency"].update(
        {"train_seconds": 30.5, "inference_images_per_second": 9100.0, "latency_ms_batch1": 2.1}
    ))  # fmt: skip
    facts = _facts(run)
    assert facts.ratio["latency"] == pytest.approx(1.05)
    assert (cheaper_to_train(facts), cheaper_to_run(facts)) == ("same", "same")
    # Lower latency for one, higher throughput for the other: it depends on batch size.
    _edit(run, lambda r: r["models"]["vit"]["efficiency"].update(
        {"inference_images_per_second": 12000.0, "latency_ms_batch1": 4.0}
    ))  # fmt: skip
    assert cheaper_to_run(_facts(run)) == "depends"


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
    facts = _facts(run)
    assert (facts.e95["cnn"][0], facts.e95["vit"][0]) == (10, 11)
    assert faster_learner(facts) == "same"  # within 2 epochs (10% of 20)
    for row in vit[:14]:  # now five epochs later: a real difference
        row["val_accuracy"] = 0.5
    (run / "run.json").write_text(json.dumps(metrics))
    facts = _facts(run)
    assert (facts.e95["cnn"][0], facts.e95["vit"][0]) == (10, 15)
    assert faster_learner(facts) == "cnn"


def test_an_unmatched_pair_is_called_unmatched_with_its_ratio(
    tmp_path: Path, tiny_run: Path
) -> None:
    """run.json's pairing says the pair missed --match flops: every verdict's scope calls it
    unmatched with the ratio; once met, none does."""
    run = make_run(tmp_path, tiny_run)

    def unmatched(record: dict) -> None:
        record["pairing"] = {"cnn": "convnext-micro", "vit": "vit-micro", "vit_patch_size": 4,
                             "params_ratio": 0.95, "flops_ratio": 1.97,
                             "match": {"on": "flops", "ratio": 1.97, "tolerance": 0.15,
                                       "met": False}}  # fmt: skip

    _edit(run, unmatched)
    facts = _facts(run)
    assert facts.extra["pairing"]["match"]["met"] is False
    assert all("unmatched on FLOPs per image (ViT/CNN 1.97x, tolerance 15%)" in v.scope
               for v in facts.verdicts)  # fmt: skip
    _edit(run, lambda r: r["pairing"].update(match={**r["pairing"]["match"], "on": "params",
                                                    "ratio": 0.95, "met": True},
                                             matched_on="params"))  # fmt: skip
    assert not any("unmatched" in v.scope for v in _facts(run).verdicts)


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
    facts = _facts(run)
    verdicts = {v.claim_id: v for v in facts.verdicts}
    for claim in ("cheaper_training_time", "cheaper_training_throughput"):
        assert verdicts[claim].outcome == "not tested"
        assert "no model training to time" in verdicts[claim].reason
    assert verdicts["cheaper_inference"].outcome != "not tested"
    text = cost_text(facts)
    assert "cheaper to train" not in text and "about as long to train" not in text
    assert "training times and throughputs are the probe's, not the models'" in text
