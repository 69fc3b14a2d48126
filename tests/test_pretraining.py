"""Each model's pretraining: read from its folder's model card or config, or given with
--pretraining, recorded in run.json, and stated beside the verdicts, which call a pair of
differing pretraining confounded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cnnvit.config import parse_pretraining_option
from cnnvit.errors import CnnvitError
from cnnvit.models.build import build_model
from cnnvit.pipeline import compare
from cnnvit.pretraining import (
    SCRATCH,
    UNKNOWN,
    pretraining_difference,
    recorded_pretraining,
)
from cnnvit.runs import load_run

RUN = {"dataset": "digits", "image_size": 16, "epochs": 1, "max_train_samples": 60,
       "max_eval_samples": 30, "precision": "fp32", "eval_batch_size": 64, "lr": 1e-3}  # fmt: skip


def _folder(tmp: Path, preset: str, family: str, card: str | None = None) -> Path:
    built = build_model(preset, family, ["a", "b"], 16)
    folder = tmp / f"{preset}-folder"
    built.model.save_pretrained(folder)
    built.processor.save_pretrained(folder)
    if card is not None:
        (folder / "README.md").write_text(card)
    return folder


def test_pretraining_is_read_from_the_card_then_the_config_else_unknown(tmp_path: Path):
    card = "---\nlicense: apache-2.0\ndatasets:\n- imagenet-21k\n- imagenet-1k\n---\n# m\n"
    folder = _folder(tmp_path, "resnet-nano", "cnn", card)
    assert recorded_pretraining(str(folder), "local", str(folder)) == {
        "data": "imagenet-21k + imagenet-1k",
        "source": "model card: README.md datasets",
    }
    (folder / "README.md").write_text("---\ndatasets: imagenet-1k\n---\n")
    assert recorded_pretraining(str(folder), "local", str(folder))["data"] == "imagenet-1k"
    (folder / "README.md").write_text("no front matter: datasets: cifar10\n")
    assert recorded_pretraining(str(folder), "local", str(folder))["data"] == UNKNOWN
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "pretraining_datasets": ["jft"]}))
    assert recorded_pretraining(str(folder), "local", str(folder)) == {
        "data": "jft", "source": "config.json pretraining_datasets"}  # fmt: skip
    assert recorded_pretraining("vit-nano", "preset")["data"] == SCRATCH
    # A curated hub id with no cached card: its hub card's data, from the table.
    assert recorded_pretraining("google/vit-base-patch16-224", "hub")["data"] == (
        "imagenet-21k + imagenet-1k")  # fmt: skip
    assert recorded_pretraining("someone/some-model", "hub")["data"] == UNKNOWN


def test_the_pretraining_option_and_what_differs():
    given = parse_pretraining_option("cnn=imagenet-1k, vit=none")
    assert given == {"cnn": "imagenet-1k", "vit": SCRATCH}
    assert parse_pretraining_option("vit=unknown") == {"vit": UNKNOWN}
    for bad in ("imagenet-1k", "cnn=", "mlp=imagenet-1k"):
        with pytest.raises(CnnvitError, match="--pretraining takes cnn=DATA"):
            parse_pretraining_option(bad)
    assert pretraining_difference({"cnn": SCRATCH, "vit": SCRATCH}) == ""
    assert pretraining_difference({"cnn": "ImageNet-22k", "vit": "imagenet-21k"}) == ""
    assert pretraining_difference({"cnn": "imagenet-1k", "vit": SCRATCH}).startswith(
        "one model pretrained, one not")  # fmt: skip
    assert pretraining_difference({"cnn": UNKNOWN, "vit": UNKNOWN}).startswith(
        "pretraining unknown")  # fmt: skip
    assert pretraining_difference({"cnn": "imagenet-1k", "vit": "cifar10"}).startswith(
        "pretraining data differ")  # fmt: skip


def test_a_pretrained_folder_against_a_preset_is_confounded_and_reported(tmp_path: Path):
    """A folder whose card says ImageNet-1k beside a from-scratch preset: run.json records
    both models' pretraining, the architecture claims are confounded with the reason in the
    verdict table, the cost claims are judged, and the report states the pretraining."""
    cnn = _folder(tmp_path, "resnet-nano", "cnn", "---\ndatasets:\n- imagenet-1k\n---\n")
    run_dir = compare(output=str(tmp_path / "run"), cnn=str(cnn), vit="vit-nano", **RUN)
    run = json.loads((run_dir / "run.json").read_text())
    assert run["models"]["cnn"]["pretraining"] == {
        "data": "imagenet-1k", "source": "model card: README.md datasets"}  # fmt: skip
    assert run["models"]["vit"]["pretraining"] == {"data": SCRATCH, "source": "preset"}
    from cnnvit.report.facts import facts_from_run

    verdicts = {v.claim_id: v for v in facts_from_run(load_run(run_dir)).verdicts}
    assert verdicts["overfits_small_data"].outcome == "confounded"
    assert verdicts["cheaper_flops"].outcome != "confounded"
    report = (run_dir / "report.md").read_text()
    assert "| confounded (one model pretrained, one not: CNN imagenet-1k, ViT none" in report
    said = (
        "Pretraining of each model: the CNN resnet-nano-folder: imagenet-1k (read from "
        "model card: README.md datasets); the ViT vit-nano: none (trained from scratch)."
    )
    assert said in report
    # The saved model's card lists its data, so loading it again records what it learned on.
    card = (run_dir / "cnn" / "README.md").read_text()
    assert "datasets:\n- imagenet-1k\n- digits" in card
    assert recorded_pretraining(str(run_dir / "vit"), "local", str(run_dir / "vit"))[
        "data"] == "digits"  # fmt: skip


def test_given_pretraining_wins_and_a_preset_refuses_it(tmp_path: Path, capsys):
    cnn = _folder(tmp_path, "resnet-nano", "cnn")  # no card: unknown unless given
    vit = _folder(tmp_path, "vit-nano", "vit")
    run_dir = compare(output=str(tmp_path / "run"), cnn=str(cnn), vit=str(vit), report=False,
                      pretraining="cnn=imagenet-1k,vit=ImageNet", **RUN)  # fmt: skip
    assert "[vit-nano-folder] pretraining: ImageNet (--pretraining)" in capsys.readouterr().err
    from cnnvit.evidence import cell_from_run, judge_claims

    verdicts = {v.claim_id: v for v in judge_claims([cell_from_run(load_run(run_dir))])}
    assert all(v.outcome != "confounded" for v in verdicts.values())  # the same data
    with pytest.raises(CnnvitError, match="vit-nano is a preset, trained from scratch"):
        compare(output=str(tmp_path / "no"), cnn=str(cnn), vit="vit-nano", report=False,
                pretraining="vit=imagenet-1k", **RUN)  # fmt: skip
    assert not (tmp_path / "no").exists()


def test_a_hub_id_is_read_from_the_card_in_the_local_hub_cache(tmp_path: Path, monkeypatch):
    """Never the network: a hub id's README.md counts only when the hub cache holds it."""
    import huggingface_hub.constants as hub_constants

    repo = tmp_path / "models--someone--some-model"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "README.md").write_text("---\ndatasets:\n- laion-2b\n---\n")
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path))
    assert recorded_pretraining("someone/some-model", "hub") == {
        "data": "laion-2b",
        "source": "model card: README.md datasets",
    }
