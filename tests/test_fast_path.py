"""The fast paths against the plain ones: same model and batch, logits close, training works."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cnnvit.config import TrainConfig
from cnnvit.data.preprocess import AugmentConfig, BatchPreprocessor, random_affine
from cnnvit.models.build import build_model, preset_processor
from cnnvit.models.presets import PRESETS
from cnnvit.runtime import Runtime, cpu_has_bf16, make_accelerator
from cnnvit.training import Hooks, train_model
from cnnvit.training.recipe import resolve_recipe

CPU = torch.device("cpu")
NAMES = [str(i) for i in range(4)]


def _batch(seed: int = 0, size: int = 16, count: int = 8) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, 3, size, size), generator=generator, dtype=torch.uint8)


def test_batch_preprocessing_matches_the_image_processor() -> None:
    """Rescale + normalise on tensors gives what the processor gives per PIL image."""
    processor = preset_processor(16)
    images = _batch()
    plain = processor(
        images=[Image.fromarray(i.permute(1, 2, 0).numpy()) for i in images], return_tensors="np"
    )["pixel_values"]
    fast = BatchPreprocessor(processor, CPU)(images)
    np.testing.assert_allclose(fast.numpy(), plain, atol=1e-5)


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no native bf16")
@pytest.mark.parametrize("name,family", [("convnext-nano", "cnn"), ("vit-nano", "vit")])
def test_bf16_autocast_logits_close_to_fp32(name: str, family: str) -> None:
    model = build_model(name, family, NAMES, 16, attention="eager").model.eval()
    x = BatchPreprocessor(preset_processor(16), CPU)(_batch())
    with torch.no_grad():
        reference = model(pixel_values=x).logits
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast = model(pixel_values=x).logits.float()
    assert _relative_error(fast, reference) < 0.05  # bf16 keeps ~3 significant digits
    assert (
        torch.equal(fast.argmax(1), reference.argmax(1)) or _relative_error(fast, reference) < 0.02
    )


def test_channels_last_cnn_logits_match_contiguous() -> None:
    model = build_model("convnext-nano", "cnn", NAMES, 16).model.eval()
    x = BatchPreprocessor(preset_processor(16), CPU)(_batch())
    with torch.no_grad():
        reference = model(pixel_values=x).logits
        model = model.to(memory_format=torch.channels_last)
        fast = model(pixel_values=x.contiguous(memory_format=torch.channels_last)).logits
    torch.testing.assert_close(fast, reference, rtol=1e-4, atol=1e-4)


def test_fused_adamw_steps_like_the_default_kernel() -> None:
    """The loop's fused AdamW on a CPU takes the same steps as torch's default AdamW."""
    runtime = Runtime(CPU, "fp32", "eager")
    models = [build_model("vit-nano", "vit", NAMES, 16, attention="eager").model for _ in (0, 1)]
    fused = runtime.optimizer(models[0].parameters(), 1e-3)
    plain = torch.optim.AdamW(models[1].parameters(), lr=1e-3, fused=False, foreach=False)
    assert fused.defaults["fused"] and runtime.describe()["optimizer"] == "AdamW (fused)"
    x = BatchPreprocessor(preset_processor(16), CPU)(_batch())
    y = torch.arange(len(x)) % len(NAMES)
    for model, optimizer in zip(models, (fused, plain), strict=True):
        torch.nn.functional.cross_entropy(model(pixel_values=x).logits, y).backward()
        optimizer.step()  # one step: Adam's later steps amplify rounding in near-zero gradients
    start = build_model("vit-nano", "vit", NAMES, 16, attention="eager").model.state_dict()
    for (name, a), b in zip(models[0].named_parameters(), models[1].parameters(), strict=True):
        assert not torch.equal(a, start[name])  # every tensor moved
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)  # a step moves each weight ~1e-3


def test_eager_attention_matches_sdpa() -> None:
    sdpa = build_model("vit-nano", "vit", NAMES, 16, attention="sdpa", seed=3).model.eval()
    eager = build_model("vit-nano", "vit", NAMES, 16, attention="eager", seed=3).model.eval()
    x = BatchPreprocessor(preset_processor(16), CPU)(_batch())
    with torch.no_grad():
        torch.testing.assert_close(eager(pixel_values=x).logits, sdpa(pixel_values=x).logits,
                                   rtol=1e-4, atol=1e-4)  # fmt: skip


def _learnable(count: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    """Four texture classes (horizontal/vertical stripes, checks, flat), noisy, any position."""
    labels = torch.arange(count) % 4
    rows, cols = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    textures = torch.stack(
        [(rows // 2) % 2, (cols // 2) % 2, ((rows // 2) + (cols // 2)) % 2, torch.ones(16, 16)]
    ).float()
    noise = torch.rand(count, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    images = 40 * noise + 180 * textures[labels][:, None]
    return images.to(torch.uint8), labels


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("name,family", [("convnext-nano", "cnn"), ("vit-nano", "vit")])
def test_a_few_training_steps_lower_the_loss(precision: str, name: str, family: str) -> None:
    if precision == "bf16" and not cpu_has_bf16():
        pytest.skip("this CPU has no native bf16")
    images, labels = _learnable()
    model = build_model(name, family, NAMES, 16, attention="eager").model
    channels_last = family == "cnn"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    preprocess = BatchPreprocessor(preset_processor(16), CPU, channels_last)
    config = TrainConfig(epochs=4, batch_size=16, lr=2e-3, warmup_fraction=0.1, augment=False)
    result = train_model(
        model,
        preprocess,
        (images, labels),
        (images, labels),
        resolve_recipe(config, PRESETS[name].recipe, len(labels)),
        make_accelerator(Runtime(CPU, precision, "eager")),
        Runtime(CPU, precision, "eager"),
        Hooks(log=lambda _: None),
    )
    history = result.history
    assert history[-1]["train_loss"] < 0.8 * history[0]["train_loss"], history


def test_same_seed_same_figures() -> None:
    images, labels = _learnable(48)
    runs = []
    for _ in range(2):
        model = build_model("vit-nano", "vit", NAMES, 16, attention="eager", seed=7).model
        config = TrainConfig(epochs=2, batch_size=16, seed=7, lr=1e-3)
        preprocess = BatchPreprocessor(preset_processor(16), CPU)
        runtime = Runtime(CPU, "fp32", "eager")
        data = (images, labels)
        result = train_model(
            model,
            preprocess,
            data,
            data,
            resolve_recipe(config, PRESETS["vit-nano"].recipe, len(labels)),
            make_accelerator(runtime),
            runtime,
            Hooks(log=lambda _: None),
        )
        runs.append([(h["train_loss"], h["val_loss"], h["val_accuracy"]) for h in result.history])
    assert runs[0] == runs[1]


def test_augmentation_is_identity_at_zero_and_moves_content_otherwise() -> None:
    x = _batch(size=16).float()
    still = AugmentConfig(max_rotation_degrees=0, max_translate_fraction=0, scale_range=(1, 1))
    torch.testing.assert_close(random_affine(x, still), x, atol=1e-3, rtol=0)
    moved = random_affine(x, AugmentConfig(), torch.Generator().manual_seed(0))
    assert moved.shape == x.shape and (moved - x).abs().mean() > 5
    flipped_only = AugmentConfig(
        max_rotation_degrees=0, max_translate_fraction=0, scale_range=(1, 1), hflip=True
    )
    out = random_affine(x, flipped_only, torch.Generator().manual_seed(0))
    mirrored = [torch.allclose(r, i.flip(-1), atol=1e-3) for i, r in zip(x, out, strict=True)]
    unchanged = [torch.allclose(r, i, atol=1e-3) for i, r in zip(x, out, strict=True)]
    # Random images are never their own mirror, so each image is exactly one of the two, and a
    # fair coin over 8 images (seeded) gives both outcomes.
    assert all(m != u for m, u in zip(mirrored, unchanged, strict=True))
    assert any(mirrored) and any(unchanged)
    no_flip = AugmentConfig(max_rotation_degrees=0, max_translate_fraction=0, scale_range=(1, 1))
    torch.testing.assert_close(random_affine(x, no_flip, torch.Generator().manual_seed(0)), x,
                               atol=1e-3, rtol=0)  # fmt: skip
