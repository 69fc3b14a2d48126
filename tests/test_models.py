"""Presets, their pairing, and hub-style loading through a local save_pretrained folder."""

from __future__ import annotations

import math
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


def test_vit_forward_flops_match_the_hand_count() -> None:
    """2 FLOPs per multiply-add over every matrix product of vit-nano at 16 px, by hand."""
    model = build_model("vit-nano", "vit", ["a", "b"], 16, attention="eager").model
    c = model.config
    tokens = (16 // c.patch_size) ** 2 + 1  # patches + the class token
    d, mlp = c.hidden_size, c.intermediate_size
    patch_embedding = 2 * (tokens - 1) * (3 * c.patch_size**2) * d
    per_layer = (
        2 * tokens * d * 3 * d  # query, key, value projections
        + 2 * tokens * tokens * d * 2  # scores and the weighted sum of values, all heads
        + 2 * tokens * d * d  # output projection
        + 2 * tokens * d * mlp * 2  # the two MLP layers
    )
    head = 2 * d * 2  # the classifier on the class token
    expected = patch_embedding + c.num_hidden_layers * per_layer + head
    assert count_flops(model, 16) == expected


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


# --- issue 8: ResNet presets, save/reload per family, pairing by params or FLOPs ----------


@pytest.mark.parametrize("name", ["resnet-nano", "convnext-nano", "vit-nano"])
def test_each_family_saves_and_reloads_with_plain_transformers(name: str, tmp_path: Path) -> None:
    """No custom code: AutoModelForImageClassification alone reloads the same function."""
    from transformers import AutoModelForImageClassification

    preset = PRESETS[name]
    built = build_model(name, preset.family, ["a", "b", "c"], 16, attention="eager")
    built.model.save_pretrained(tmp_path / name)
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path / name).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        expected = built.model.eval()(pixel_values=x).logits
        assert torch.allclose(reloaded(pixel_values=x).logits, expected, atol=1e-5)
    assert reloaded.config.id2label == {0: "a", 1: "b", 2: "c"}


def test_resnet_presets_end_on_2x2_maps_at_32_px() -> None:
    """Stem /4 (7x7 stride-2 conv, stride-2 pool), then three stages: 8x8, 4x4, 2x2 maps."""
    model = build_model("resnet-micro", "cnn", ["a", "b"], 32).model.eval()
    with torch.no_grad():
        hidden = model(pixel_values=torch.zeros(1, 3, 32, 32), output_hidden_states=True)
    sides = [h.shape[-1] for h in hidden.hidden_states]
    assert sides == [8, 8, 4, 2]  # after the stem, then after each stage
    assert model.config.layer_type == "basic"


@pytest.mark.parametrize("size", sorted({p.size for p in PRESETS.values()}))
@pytest.mark.parametrize("architecture", ["resnet", "convnext"])
def test_named_pairs_are_within_the_stated_parameter_tolerance(
    size: str, architecture: str
) -> None:
    from cnnvit.models.pairing import PARAMS_TOLERANCE, partner, preset_costs

    cnn, vit = default_pair_for(size, architecture)
    cnn_params, vit_params = preset_costs(cnn)["params"], preset_costs(vit)["params"]
    assert abs(cnn_params - vit_params) / max(cnn_params, vit_params) <= PARAMS_TOLERANCE
    assert partner(vit, "cnn", "params", architecture=architecture) == cnn
    assert partner(cnn, "vit", "params") == vit


def test_flops_matching_picks_a_partner_closer_in_flops() -> None:
    from cnnvit.models.pairing import partner, preset_costs

    for vit in ("vit-nano", "vit-micro", "vit-mini"):
        flops = preset_costs(vit)["flops_per_image"]
        by_params = preset_costs(partner(vit, "cnn", "params"))["flops_per_image"]
        by_flops = preset_costs(partner(vit, "cnn", "flops"))["flops_per_image"]
        assert abs(math.log(by_flops / flops)) <= abs(math.log(by_params / flops))
    # At 32 px a ViT does several times a parameter-matched ResNet's FLOPs, so they differ.
    assert partner("vit-micro", "cnn", "flops") != partner("vit-micro", "cnn", "params")


def test_pair_ratios_and_auto_resolution() -> None:
    from cnnvit.models.pairing import pair_ratios, resolve_pair

    names = [str(i) for i in range(10)]
    cnn = build_model("resnet-micro", "cnn", names, 32)
    vit = build_model("vit-micro", "vit", names, 32, attention="eager")
    ratios = pair_ratios(cnn, vit)
    assert ratios["params_ratio"] == pytest.approx(
        count_params(vit.model) / count_params(cnn.model)
    )
    assert ratios["flops_ratio"] > 3  # 64 tokens through 6 layers against a stride-4 stem
    assert resolve_pair("auto", "vit-micro") == ("resnet-micro", "vit-micro")
    assert resolve_pair("convnext-micro", "auto") == ("convnext-micro", "vit-micro")
    # The defaults (both auto) are the micro pair by parameters, as before --match flops.
    assert resolve_pair("auto", "auto") == ("resnet-micro", "vit-micro")
    # Beside a hub model, auto has no partner: the default preset, reported as unmatched.
    assert resolve_pair("auto", "google/vit-base-patch16-224")[0] == "resnet-micro"
    with pytest.raises(CnnvitError, match="params or flops"):
        resolve_pair("auto", "vit-micro", match="speed")


# --- issue 28: a pair is what it says it is -----------------------------------------------


@pytest.mark.parametrize("image_size", [32, 16])
@pytest.mark.parametrize("size", ["nano", "micro", "mini"])
def test_match_flops_alone_gives_a_pair_within_its_tolerance(size: str, image_size: int) -> None:
    from cnnvit.models.pairing import MATCH_TOLERANCE, match_gap, preset_costs, resolve_pair

    vit_side = "auto" if size == "micro" else f"vit-{size}"  # micro: --match flops alone
    cnn, vit = resolve_pair("auto", vit_side, "flops", image_size)
    assert vit == f"vit-{size}" and PRESETS[cnn].architecture == "resnet"
    cnn_costs, vit_costs = preset_costs(cnn, image_size), preset_costs(vit, image_size)
    ratio = vit_costs["flops_per_image"] / cnn_costs["flops_per_image"]
    assert match_gap(ratio) <= MATCH_TOLERANCE["flops"], (cnn, vit, ratio)
    # And the parameter-matched partner of the same ViT is what it was, several times off.
    by_params = preset_costs(resolve_pair("auto", vit, "params", image_size)[0], image_size)
    assert vit_costs["flops_per_image"] / by_params["flops_per_image"] > 4


def test_match_flops_on_digits_16_token_vit_is_within_tolerance() -> None:
    """Digits at 32 px give the ViT 8-px patches (16 tokens, a quarter of the FLOPs): --match
    flops alone still finds a ResNet within tolerance, here within it on parameters too."""
    from cnnvit.models.pairing import MATCH_TOLERANCE, match_gap, preset_costs, resolve_pair

    cnn, vit = resolve_pair("auto", "auto", "flops", 32, patch_size=8)
    assert vit == "vit-micro" and cnn == "resnet-micro-deep"
    vit_costs, cnn_costs = preset_costs(vit, 32, 8), preset_costs(cnn, 32)
    for key, match in (("flops_per_image", "flops"), ("params", "params")):
        assert match_gap(vit_costs[key] / cnn_costs[key]) <= MATCH_TOLERANCE[match], key


def test_match_records_never_claim_a_match_outside_the_tolerance() -> None:
    from cnnvit.models.pairing import match_gap, match_record, unmatched_line

    assert match_gap(1 / 1.15) == pytest.approx(match_gap(1.15)) == pytest.approx(0.15 / 1.15)
    assert match_record("params", 1.17)["met"] is True  # 1 - 1/1.17 = 14.5%
    assert match_record("params", 1.19)["met"] is False  # 16.0%
    record = match_record("flops", 6.39)
    assert record == {"on": "flops", "ratio": 6.39, "tolerance": 0.15, "met": False}
    line = unmatched_line("resnet-micro", "vit-micro", record)
    assert "unmatched on FLOPs per image" in line and "6.39x" in line and "15%" in line


def test_a_named_pair_off_its_match_is_recorded_unmatched(tmp_path: Path) -> None:
    """`--match flops` beside two named presets FLOPs apart: run.json's pairing says
    unmatched with the ratio, and holds no matched_on; on params the same pair is matched."""
    from cnnvit.config import build_config
    from cnnvit.data import prepare_data
    from cnnvit.pipeline import _build_models
    from cnnvit.runtime import resolve_runtime

    runtime = resolve_runtime("cpu", "fp32", "eager")
    for match, met in (("flops", False), ("params", True)):
        config = build_config({"dataset": "digits", "cnn": "convnext-nano", "vit": "vit-nano",
                               "image_size": 16, "patch_size": 4, "match": match,
                               "max_train_samples": 20, "max_eval_samples": 20})  # fmt: skip
        data = prepare_data(config.data)
        _, pairing = _build_models(config, data, runtime, ("cnn", "vit"))
        assert pairing["match"]["on"] == match and pairing["match"]["met"] is met
        assert ("matched_on" in pairing) is met
        assert pairing["match"]["ratio"] == pytest.approx(pairing[f"{match}_ratio"])
    assert pairing["flops_ratio"] > 1.5  # vit-nano does twice convnext-nano's FLOPs
