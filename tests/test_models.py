"""Presets, their pairing, and hub-style loading through a local save_pretrained folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cnnvit.errors import CnnvitError
from cnnvit.models import PRESETS, build_model, count_flops, count_params, default_pair_for


@pytest.mark.parametrize("size", sorted({p.size for p in PRESETS.values()}))
def test_each_pair_is_within_25_percent_in_parameters(size: str) -> None:
    cnn_name, vit_name = default_pair_for(size)
    names = [str(i) for i in range(10)]
    cnn = count_params(build_model(cnn_name, "cnn", names, 32).model)
    vit = count_params(build_model(vit_name, "vit", names, 32).model)
    assert abs(cnn - vit) / max(cnn, vit) <= 0.25, (size, cnn, vit)


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_builds_with_dataset_labels_and_runs(name: str) -> None:
    preset = PRESETS[name]
    built = build_model(name, preset.family, ["cat", "dog", "eel"], 16)
    assert built.model.config.id2label == {0: "cat", 1: "dog", 2: "eel"}
    logits = built.model(pixel_values=torch.randn(2, 3, 16, 16)).logits
    assert logits.shape == (2, 3)


def test_flops_scale_with_image_size() -> None:
    model = build_model("vit-nano", "vit", ["a", "b"], 16).model
    small = count_flops(model, 16)
    bigger = count_flops(build_model("vit-nano", "vit", ["a", "b"], 32).model, 32)
    assert bigger > 3.5 * small  # 4x the tokens: linear layers 4x, attention 16x
    assert count_flops(model, 16, train_step=True) == 3 * small


def test_training_flops_rule_matches_the_counter_where_it_is_exact() -> None:
    """3x forward is what torch's counter measures for forward+backward of a ViT."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model("vit-nano", "vit", ["a", "b"], 16, attention="eager").model.train()
    with FlopCounterMode(display=False) as counter:
        model(pixel_values=torch.zeros(2, 3, 16, 16)).logits.sum().backward()
    measured_per_image = counter.get_total_flops() / 2
    assert measured_per_image == pytest.approx(count_flops(model, 16, train_step=True), rel=0.03)


def test_local_folder_loads_like_a_hub_model_with_a_resized_head(tmp_path: Path) -> None:
    source = build_model("vit-nano", "vit", [str(i) for i in range(10)], 16)
    source.model.save_pretrained(tmp_path / "saved")
    source.processor.save_pretrained(tmp_path / "saved")
    loaded = build_model(str(tmp_path / "saved"), "vit", ["yes", "no", "maybe"], 32)
    assert loaded.source == "local" and loaded.pretrained is True
    assert loaded.model.config.num_labels == 3 and loaded.model.config.label2id["maybe"] == 2
    # The backbone's weights came from the folder; only the head was replaced.
    before = source.model.vit.embeddings.patch_embeddings.projection.weight
    after = loaded.model.vit.embeddings.patch_embeddings.projection.weight
    assert torch.equal(before, after)
    assert loaded.processor.size["height"] == 16  # the model's own processor, not --image-size


def test_wrong_family_and_bad_size_are_refused() -> None:
    with pytest.raises(CnnvitError, match="pass it as --vit"):
        build_model("vit-nano", "cnn", ["a", "b"], 32)
    with pytest.raises(CnnvitError, match="multiple of 4"):
        build_model("vit-nano", "vit", ["a", "b"], 30)
