"""The training loop's recipe details: which parameters decay, the learning-rate schedule it
actually followed, and that the model handed back is the best validation epoch's."""

from __future__ import annotations

import math

import torch

from cnnvit.config import TrainConfig
from cnnvit.data.preprocess import BatchPreprocessor
from cnnvit.evaluation import predict
from cnnvit.models.build import build_model, preset_processor
from cnnvit.models.presets import CNN_RECIPE, VIT_RECIPE
from cnnvit.runtime import Runtime, make_accelerator
from cnnvit.training import Hooks, train_model
from cnnvit.training.loop import _param_groups
from cnnvit.training.recipe import resolve_recipe

CPU = torch.device("cpu")
RUNTIME = Runtime(CPU, "fp32", "eager")


def _textures(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Four noisy texture classes at 16 px: learnable in a few epochs."""
    labels = torch.arange(count) % 4
    rows, cols = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    textures = torch.stack(
        [(rows // 2) % 2, (cols // 2) % 2, ((rows // 2) + (cols // 2)) % 2, torch.ones(16, 16)]
    ).float()
    noise = torch.rand(count, 3, 16, 16, generator=torch.Generator().manual_seed(seed))
    return (60 * noise + 160 * textures[labels][:, None]).to(torch.uint8), labels


def test_weight_decay_skips_biases_norms_position_embeddings_and_class_token() -> None:
    model = build_model("vit-nano", "vit", ["a", "b"], 16).model
    decay, no_decay = _param_groups(model, 0.05, 1e-3)
    names = {id(p): n for n, p in model.named_parameters()}
    exempt = {names[id(p)] for p in no_decay["params"]}
    decayed = {names[id(p)] for p in decay["params"]}
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert exempt | decayed == set(names.values()) and not exempt & decayed
    assert "vit.embeddings.position_embeddings" in exempt and "vit.embeddings.cls_token" in exempt
    assert all(n.endswith("bias") or "layernorm" in n or "embeddings" in n for n in exempt)
    assert "vit.layers.0.attention.q_proj.weight" in decayed
    assert "vit.embeddings.patch_embeddings.projection.weight" in decayed  # a conv kernel
    cnn = build_model("convnext-nano", "cnn", ["a", "b"], 16).model
    decay, no_decay = _param_groups(cnn, 0.05, 1e-3)
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim < 2 for p in no_decay["params"])


def test_learning_rate_follows_warmup_then_cosine_to_zero() -> None:
    images, labels = _textures(64, 0)
    config = TrainConfig(epochs=5, batch_size=16, lr=2e-3, warmup_fraction=0.25,
                         label_smoothing=0.0, augment_strength=0.0)  # fmt: skip
    model = build_model("vit-nano", "vit", [str(i) for i in range(4)], 16).model
    result = train_model(model, BatchPreprocessor(preset_processor(16), CPU), (images, labels),
                         (images, labels), resolve_recipe(config, VIT_RECIPE, len(labels)),
                         make_accelerator(RUNTIME), RUNTIME, Hooks(log=lambda _: None))  # fmt: skip
    steps_per_epoch, total = 4, 20
    warmup = round(total * 0.25)
    for row in result.history:
        step = row["epoch"] * steps_per_epoch  # the scheduler's position after that epoch
        progress = (step - warmup) / (total - warmup)
        expected = 2e-3 * (
            step / warmup if step < warmup else 0.5 * (1 + math.cos(math.pi * progress))
        )
        assert math.isclose(row["lr"], expected, rel_tol=1e-6, abs_tol=1e-12), (row, expected)
    assert result.history[-1]["lr"] == 0.0


def test_the_model_returned_is_the_best_validation_epochs() -> None:
    train = _textures(96, 1)
    # Noise images with random labels: validation accuracy moves up and down between epochs,
    # as the predictions on images that carry no signal drift with the weights.
    generator = torch.Generator().manual_seed(7)  # a draw whose last epoch is not the best
    images = torch.randint(0, 256, (64, 3, 16, 16), generator=generator, dtype=torch.uint8)
    labels = torch.randint(0, 4, (64,), generator=generator)
    config = TrainConfig(epochs=6, batch_size=16, lr=3e-3, warmup_fraction=0.1, seed=3,
                         label_smoothing=0.0, augment_strength=0.0)  # fmt: skip
    model = build_model("convnext-nano", "cnn", [str(i) for i in range(4)], 16, seed=3).model
    preprocess = BatchPreprocessor(preset_processor(16), CPU)
    result = train_model(model, preprocess, train, (images, labels),
                         resolve_recipe(config, CNN_RECIPE, len(train[1])),
                         make_accelerator(RUNTIME), RUNTIME, Hooks(log=lambda _: None))  # fmt: skip
    accuracies = [row["val_accuracy"] for row in result.history]
    assert result.history[result.best_epoch - 1]["val_accuracy"] == max(accuracies)
    logits, _ = predict(result.model, preprocess, images, labels, 64)
    restored = float((logits.argmax(1) == labels).float().mean())
    assert restored == max(accuracies)
    # Meaningful only if the last epoch was worse: then the final weights were replaced.
    assert accuracies[-1] < max(accuracies), accuracies
