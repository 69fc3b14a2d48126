"""Frozen features for `--adapt probe`: the classifier's inputs, computed once and cached.

An entry is `<cache>/features/<key>.pt` (float32 (N, D)), where the key hashes what determines
the features: the model's identity (its name, config.json and each weights file's name, size
and modification time for a folder), the processor (its saved settings: size, normalisation),
the precision and the split's pixels (a sha256 of the uint8 images). Any change makes a new key,
so a stale entry is never read. Written to a temporary file and renamed, as the image cache is;
`CNNVIT_CACHE=off` computes them in memory every time.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..data.cache import cache_root
from .adaptation import classifier_linear

FORMAT = 1


def model_identity(spec: str, model: torch.nn.Module) -> str:
    """What names a model's weights: for a folder its config and weights files' size and
    mtime; for a hub id the id and the commit it resolved to."""
    path = Path(spec).expanduser()
    if path.is_dir():
        parts = [str(path.resolve()), (path / "config.json").read_text(encoding="utf-8")]
        for file in sorted(path.iterdir()):
            if file.suffix in (".safetensors", ".bin") or file.name.endswith(".index.json"):
                stat = file.stat()
                parts.append(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}")
        return "\n".join(parts)
    return f"{spec}@{getattr(model.config, '_commit_hash', None)}"


def feature_key(identity: str, processor: Any, precision: str, images: torch.Tensor) -> str:
    digest = hashlib.sha256()
    settings = processor.to_dict() if hasattr(processor, "to_dict") else repr(processor)
    about = json.dumps({"format": FORMAT, "model": identity, "processor": settings,
                        "precision": precision}, sort_keys=True, default=str)  # fmt: skip
    digest.update(about.encode())
    digest.update(str(tuple(images.shape)).encode())
    for start in range(0, len(images), 256):
        digest.update(images[start : start + 256].contiguous().numpy())  # no copy of the pixels
    return digest.hexdigest()[:32]


@torch.inference_mode()
def extract_features(
    model: torch.nn.Module, preprocess: Any, images: torch.Tensor, batch_size: int, autocast: Any
) -> torch.Tensor:
    """The classifier's input for every image, float32 (N, D) on the CPU (model in eval)."""
    captured: list[torch.Tensor] = []
    hook = classifier_linear(model).register_forward_pre_hook(
        lambda module, args: captured.append(args[0].flatten(1).float().cpu())
    )
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(images), batch_size):
            with autocast():
                model(pixel_values=preprocess(images[start : start + batch_size]))
    finally:
        hook.remove()
        model.train(was_training)
    return torch.cat(captured)


def cached_features(key: str, compute: Any, log: Any = None) -> tuple[torch.Tensor, bool]:
    """The features under `key` from the cache, or `compute()`d and stored; (features, hit)."""
    root = cache_root()
    folder = root.parent / "features" if root is not None else None
    if folder is not None:
        path = folder / f"{key}.pt"
        try:
            return torch.load(path, weights_only=True), True
        except (OSError, RuntimeError, EOFError, ValueError):
            pass
    features = compute()
    if folder is not None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            handle, temp = tempfile.mkstemp(dir=folder, prefix=f".{key}.", suffix=".tmp")
            os.close(handle)
            torch.save(features, temp)
            os.replace(temp, folder / f"{key}.pt")
        except OSError as err:
            if log is not None:
                log(f"cannot cache features in {folder} ({err.strerror}): computed in memory")
    return features, False
