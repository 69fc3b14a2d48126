"""--adapt probe|head|full: what each mode trains, the probe's feature cache, and the fine-tuning
recipe pretrained models get (and presets do not)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import EfficientNetConfig, EfficientNetForImageClassification

from cnnvit.config import TrainConfig, build_config
from cnnvit.errors import CnnvitError
from cnnvit.models.adaptation import freeze_for
from cnnvit.models.build import build_model, preset_processor
from cnnvit.models.features import cached_features, feature_key, model_identity
from cnnvit.models.presets import PRESETS
from cnnvit.pipeline import compare
from cnnvit.training.loop import _param_groups
from cnnvit.training.recipe import resolve_recipe
from cnnvit.training.tuning import trial_images

CLASSES = [str(i) for i in range(10)]


def _folder(tmp: Path, preset: str, family: str) -> Path:
    built = build_model(preset, family, ["a", "b"], 16)
    built.model.save_pretrained(tmp / preset)
    built.processor.save_pretrained(tmp / preset)
    return tmp / preset


def _trainable(model: torch.nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_each_mode_trains_only_what_it_says() -> None:
    vit = build_model("vit-micro", "vit", CLASSES, 16).model  # 6 blocks: head tunes 2 (a third)
    assert (
        freeze_for(vit, "probe")
        == 192 * 10 + 10
        == sum(p.numel() for p in vit.classifier.parameters())
    )
    assert _trainable(vit) == {"classifier.weight", "classifier.bias"}
    head = freeze_for(vit, "head")
    names = _trainable(vit)
    blocks = {n.split(".")[2] for n in names if n.startswith("vit.layers.")}
    assert blocks == {"4", "5"}
    assert "vit.embeddings.cls_token" not in names and "vit.layernorm.weight" in names
    assert head == sum(p.numel() for n, p in vit.named_parameters() if n in names)
    assert freeze_for(vit, "full") == sum(p.numel() for p in vit.parameters())
    resnet = build_model("resnet-nano", "cnn", CLASSES, 16).model
    freeze_for(resnet, "head")
    assert {n.split(".")[3] for n in _trainable(resnet) if n.startswith("resnet.")} == {"2"}
    assert not any("stages.1" in n or "embedder" in n for n in _trainable(resnet))
    config = EfficientNetConfig(
        image_size=32, num_labels=3, width_coefficient=1.0, depth_coefficient=1.0, hidden_dim=1280
    )  # B0
    eff = EfficientNetForImageClassification(config)
    freeze_for(eff, "head")
    names = _trainable(eff)
    assert "efficientnet.encoder.top_conv.weight" in names
    assert "efficientnet.encoder.blocks.15.projection.project_conv.weight" in names  # B0's last
    assert not any(".blocks.14." in n or "embeddings" in n for n in names)


def test_pretrained_models_get_the_fine_tuning_recipe_and_presets_do_not(tmp_path: Path) -> None:
    config = TrainConfig(epochs=20)
    for family, preset in (("cnn", "resnet-nano"), ("vit", "vit-nano")):
        scratch = build_model(preset, family, CLASSES, 16)
        loaded = build_model(str(_folder(tmp_path, preset, family)), family, CLASSES, 16)
        assert loaded.pretrained and not scratch.pretrained
        tuned = resolve_recipe(config, loaded.recipe, 1000)
        plain = resolve_recipe(config, scratch.recipe, 1000)
        assert plain.label_smoothing > 0 and plain.augment_strength > 0 and plain.layer_decay == 1
        assert tuned.label_smoothing == 0 and tuned.augment_strength == 0
        assert tuned.lr < plain.lr and tuned.warmup_fraction < plain.warmup_fraction
        assert (tuned.layer_decay < 1) == (family == "vit")
        # --lr auto: the six trials of a pretrained model cost less than its training
        first, second = trial_images(3, 1000, 64, loaded.recipe.max_trial_share)
        assert 4 * first + 2 * second <= 3 * 1000 / 2
        first, second = trial_images(3, 1000, 64, scratch.recipe.max_trial_share)
        assert 4 * first + 2 * second > 3 * 1000


def test_layer_decay_lowers_each_earlier_blocks_rate() -> None:
    vit = build_model("vit-nano", "vit", CLASSES, 16).model  # 4 blocks
    groups = _param_groups(vit, 0.05, 1e-3, layer_decay=0.5)
    rate = {id(p): g["lr"] for g in groups for p in g["params"]}
    named = dict(vit.named_parameters())
    assert rate[id(named["classifier.weight"])] == pytest.approx(1e-3)
    assert rate[id(named["vit.layers.3.attention.q_proj.weight"])] == pytest.approx(5e-4)
    assert rate[id(named["vit.layers.0.attention.q_proj.weight"])] == pytest.approx(1e-3 / 16)
    assert rate[id(named["vit.embeddings.cls_token"])] == pytest.approx(1e-3 / 32)
    assert {id(p) for g in groups for p in g["params"]} == {id(p) for p in vit.parameters()}


def test_feature_key_changes_with_model_processor_precision_and_split(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "vit-nano", "vit")
    model = build_model(str(folder), "vit", CLASSES, 16).model
    images = torch.randint(0, 255, (8, 3, 16, 16), dtype=torch.uint8)
    identity = model_identity(str(folder), model)
    base = feature_key(identity, preset_processor(16), "fp32", images)
    assert base == feature_key(identity, preset_processor(16), "fp32", images.clone())
    other = images.clone()
    other[0, 0, 0, 0] ^= 1
    changed = [
        feature_key(identity, preset_processor(32), "fp32", images),
        feature_key(identity, preset_processor(16), "bf16", images),
        feature_key(identity, preset_processor(16), "fp32", other),
    ]
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes())  # rewritten: a new modification time
    import os

    os.utime(weights, ns=(1, 1))
    changed.append(feature_key(model_identity(str(folder), model), preset_processor(16), "fp32",
                               images))  # fmt: skip
    assert base not in changed and len(set(changed)) == len(changed)
    calls = []
    first, hit = cached_features(base, lambda: calls.append(1) or torch.ones(8, 4))
    again, hit_again = cached_features(base, lambda: calls.append(1) or torch.zeros(8, 4))
    assert (hit, hit_again, len(calls)) == (False, True, 1) and torch.equal(first, again)


def test_probe_compare_records_the_mode_and_reuses_its_features(tmp_path: Path, capsys) -> None:
    cnn, vit = _folder(tmp_path, "resnet-nano", "cnn"), _folder(tmp_path, "vit-nano", "vit")
    settings = {"dataset": "digits", "cnn": str(cnn), "vit": str(vit), "image_size": 16,
                "epochs": 2, "max_train_samples": 100, "max_eval_samples": 40,
                "precision": "fp32", "adapt": "probe", "eval_batch_size": 64}  # fmt: skip
    runs = []
    for name in ("a", "b"):
        runs.append(compare(report=False, output=str(tmp_path / name), **settings))
    err = capsys.readouterr().err
    assert "computed" in err and "read from the cache" in err
    run = json.loads((runs[1] / "run.json").read_text())
    for family in ("cnn", "vit"):
        record = run["models"][family]
        assert record["adaptation"]["mode"] == "probe" and record["adaptation"]["features_cached"]
        assert record["training"]["trainable_params"] == 10 * (104 if family == "cnn" else 96) + 10
        assert record["recipe"]["label_smoothing"] == 0 and record["recipe"]["adapt"] == "probe"


def test_presets_take_only_full_and_mode_lists_are_refused() -> None:
    with pytest.raises(CnnvitError, match="--adapt head is for pretrained models"):
        compare(report=False, dataset="digits", cnn="resnet-nano", vit="vit-nano",
                image_size=16, adapt="head", max_train_samples=50)  # fmt: skip
    with pytest.raises(CnnvitError, match="the one combination"):
        build_config({"adapt": "probe,head"})
    with pytest.raises(CnnvitError, match="--adapt must be one of"):
        build_config({"adapt": "linear"})
    assert all(p.recipe.layer_decay == 1 for p in PRESETS.values())


def test_the_eval_batch_is_chosen_for_the_image_size() -> None:
    from cnnvit.training.recipe import eval_batch_for

    assert [eval_batch_for(s) for s in (16, 32, 64, 128, 224, 384, 1024)] == [
        512, 512, 512, 128, 32, 8, 8
    ]  # fmt: skip
    auto = resolve_recipe(build_config({}).train, PRESETS["vit-nano"].recipe, 100, 224)
    fixed = resolve_recipe(build_config({"eval_batch_size": 96}).train,
                           PRESETS["vit-nano"].recipe, 100, 224)  # fmt: skip
    assert (auto.eval_batch_size, fixed.eval_batch_size) == (32, 96)
