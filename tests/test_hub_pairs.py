"""`cnnvit models --hub` and `--hub-pair`: the curated table's figures against a hand count, and
the pair picked by name (hub loading itself cannot run here; a local folder stands in)."""

from __future__ import annotations

import pytest

from cnnvit.catalog import describe_hub_pairs, hub_costs, hub_listing
from cnnvit.config import build_config
from cnnvit.errors import CnnvitError
from cnnvit.models.hub_pairs import HUB_PAIRS, hub_pair
from cnnvit.study.grid import build_study_config, resolve_pairs


def _resnet50_by_hand() -> tuple[int, int]:
    """ResNet-50 (transformers' ResNetConfig defaults: bottlenecks 3-4-6-3, stride on the 3x3,
    a 1x1 projection shortcut where shape changes) at 224 px: parameters (convolutions without
    bias, two per batch-norm channel, the 1,000-class head) and forward FLOPs (2 per
    multiply-add of convolutions and the head)."""
    params, macs = 3 * 64 * 49 + 2 * 64, 3 * 64 * 49 * 112 * 112  # 7x7 stem, stride 2
    cin, side = 64, 56  # after the 3x3 max-pool
    for depth, out, stride in ((3, 256, 1), (4, 512, 2), (6, 1024, 2), (3, 2048, 2)):
        r = out // 4
        for i in range(depth):
            s, c = (stride, cin) if i == 0 else (1, out)
            so = side // s
            params += c * r + 9 * r * r + r * out + 2 * (2 * r + out)
            macs += c * r * side * side + 9 * r * r * so * so + r * out * so * so
            if c != out or s != 1:
                params += c * out + 2 * out
                macs += c * out * so * so
            side = so
        cin = out
    return params + 2048 * 1000 + 1000, 2 * (macs + 2048 * 1000)


def _vit_by_hand(d: int, layers: int, mlp: int, image: int = 224, patch: int = 16) -> tuple:
    """A ViT with a class token and learned positions, 1,000 classes, at `image` px."""
    n = (image // patch) ** 2 + 1
    block = 4 * d + 4 * (d * d + d) + 2 * d * mlp + mlp + d  # 2 norms, qkv + out, MLP
    params = 3 * patch * patch * d + d + d + n * d + layers * block + 2 * d + d * 1000 + 1000
    macs = (n - 1) * 3 * patch * patch * d + layers * (n * (4 * d * d + 2 * d * mlp)
                                                       + 2 * n * n * d) + d * 1000  # fmt: skip
    return params, 2 * macs


def test_resnet50_deit_s_figures_match_a_hand_count():
    pair = HUB_PAIRS["resnet50-deit-s"]
    cnn, vit = hub_costs(pair.cnn), hub_costs(pair.vit)
    assert (cnn["params"], cnn["flops_per_image"]) == _resnet50_by_hand()
    assert (vit["params"], vit["flops_per_image"]) == _vit_by_hand(384, 12, 1536)
    (row,) = describe_hub_pairs([pair.name])
    hand_cnn, hand_vit = _resnet50_by_hand(), _vit_by_hand(384, 12, 1536)
    assert row["params_ratio"] == pytest.approx(hand_vit[0] / hand_cnn[0])
    assert row["flops_ratio"] == pytest.approx(hand_vit[1] / hand_cnn[1])
    text = hub_listing([pair.name])
    assert f"{pair.name}: params x{hand_vit[0] / hand_cnn[0]:.2f}" in text
    assert f"{hand_vit[0] / 1e6:.2f}M" in text and f"{hand_cnn[1] / 1e9:.2f} GFLOPs" in text
    assert "pretrained on imagenet-1k; licence apache-2.0" in text


def test_hub_pair_names_both_models_and_an_unknown_name_lists_the_names():
    config = build_config({"hub_pair": "effnet-b0-deit-ti"})
    assert (config.models.cnn, config.models.vit) == (
        "google/efficientnet-b0", "facebook/deit-tiny-patch16-224")  # fmt: skip
    with pytest.raises(CnnvitError) as err:
        build_config({"hub_pair": "resnet-vs-vit"})
    message = str(err.value)
    assert "\n" not in message and all(name in message for name in HUB_PAIRS)
    with pytest.raises(CnnvitError, match="not both"):
        build_config({"hub_pair": "effnet-b0-deit-ti", "cnn": "resnet-micro"})
    assert hub_pair(" ConvNeXt-T-Swin-T ").name == "convnext-t-swin-t"


def test_a_study_takes_a_hub_pair_by_name_and_not_beside_pairs():
    study = build_study_config({"hub_pair": "convnext-t-swin-t"})
    (pair,) = resolve_pairs(study)
    assert (pair.name, pair.cnn, pair.vit) == (
        "convnext-t-swin-t", "facebook/convnext-tiny-224",
        "microsoft/swin-tiny-patch4-window7-224")  # fmt: skip
    with pytest.raises(CnnvitError, match="--pairs"):
        build_study_config({"hub_pair": "convnext-t-swin-t", "pairs": "nano"})


def test_the_models_command_lists_every_hub_pair(capsys):
    from cnnvit.cli import main

    assert main(["models", "--hub"]) == 0
    out = capsys.readouterr().out
    assert all(f"\n{name}: params x" in out for name in HUB_PAIRS)
    assert "microsoft/resnet-50" in out and "Apple sample code licence" in out
