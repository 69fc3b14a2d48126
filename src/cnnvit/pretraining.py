"""What each model was pretrained on: read from its folder, the curated hub table, or the user.

A preset is trained from scratch (`SCRATCH`). A hub or local model's pretraining data is read
from what it records, first the `--pretraining` option (`cnn=imagenet-1k,vit=unknown`; datasets
joined by `+`, `none` for from scratch), then the `datasets:` list of its model card's YAML
front matter (README.md in the folder, or in the local hub cache for a hub id; cnnvit's own
cards list the data a model was trained on), then a `pretraining_datasets` field of its config,
then the curated hub table (`hub_pairs.HUB_MODELS`); with none of these it is `UNKNOWN`, and
unknown counts as unknown: two unknowns are not taken to be the same. `pretraining_difference`
says why two records make a comparison of architectures confounded ("" when they agree).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .config import FAMILIES, FAMILY_NAMES, SCRATCH, UNKNOWN

# Spellings of one dataset, so "imagenet" and "imagenet-1k" (or 22k and 21k) compare equal.
_ALIASES = {
    "imagenet": "imagenet-1k",
    "imagenet1k": "imagenet-1k",
    "ilsvrc2012": "imagenet-1k",
    "ilsvrc-2012": "imagenet-1k",
    "imagenet-2012": "imagenet-1k",
    "imagenet22k": "imagenet-21k",
    "imagenet-22k": "imagenet-21k",
    "imagenet21k": "imagenet-21k",
}


def _canonical(name: str) -> str:
    key = re.sub(r"[\s_]+", "-", name.strip().lower())
    return _ALIASES.get(key, key)


def data_key(data: str) -> tuple[str, ...] | None:
    """The datasets of a record, normalised for comparison: () from scratch, None unknown."""
    if data == SCRATCH:
        return ()
    if data == UNKNOWN or not data.strip():
        return None
    return tuple(_canonical(part) for part in data.split("+") if part.strip())


def record(data: str, source: str) -> dict[str, str]:
    """run.json's pretraining record of one model: the data and where it was read."""
    return {"data": data, "source": source}


def _front_matter(card: Path) -> dict[str, Any]:
    try:
        text = card.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    match = re.match(r"---\s*\n(.*?)\n---\s*(\n|$)", text, re.DOTALL)
    if not match:
        return {}
    try:
        meta = yaml.safe_load(match.group(1))
    except yaml.YAMLError:
        return {}
    return meta if isinstance(meta, dict) else {}


def _names(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value] if value else []
    return [str(v).strip() for v in items if str(v).strip()]


def _cached_card(repo_id: str) -> Path | None:
    """A hub model's README.md if the local hub cache holds one (never the network)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "README.md")
    except Exception:  # noqa: BLE001 - a cache that cannot be read holds nothing
        return None
    return Path(found) if isinstance(found, str) else None


def recorded_pretraining(spec: str, source: str, folder: str = "") -> dict[str, str]:
    """What a model records of its pretraining (see the module docstring), as `record`."""
    if source == "preset":
        return record(SCRATCH, "preset")
    card = Path(folder) / "README.md" if folder else _cached_card(spec)
    if card is not None and card.is_file():
        datasets = _names(_front_matter(card).get("datasets"))
        if datasets:
            return record(" + ".join(datasets), "model card: README.md datasets")
    config = Path(folder) / "config.json" if folder else None
    if config is not None and config.is_file():
        try:
            datasets = _names(json.loads(config.read_text(encoding="utf-8"))
                              .get("pretraining_datasets"))  # fmt: skip
        except (OSError, ValueError, AttributeError):
            datasets = []
        if datasets:
            return record(" + ".join(datasets), "config.json pretraining_datasets")
    from .models.hub_pairs import HUB_MODELS

    if source == "hub" and spec in HUB_MODELS:
        return record(HUB_MODELS[spec].pretraining, "cnnvit's hub table, from its hub card")
    return record(UNKNOWN, "nothing recorded: give --pretraining")


def pretraining_difference(pretraining: Mapping[str, Mapping[str, str] | str]) -> str:
    """Why a pair's pretraining confounds a comparison of architectures, or "" when the two
    models were pretrained on the same recorded data (or both trained from scratch)."""

    def data(family: str) -> str:
        value = pretraining.get(family) or UNKNOWN
        return str(value.get("data", UNKNOWN)) if isinstance(value, Mapping) else str(value)

    keys = {f: data_key(data(f)) for f in FAMILIES}
    if None not in keys.values() and keys["cnn"] == keys["vit"]:
        return ""
    said = ", ".join(f"{FAMILY_NAMES[f]} {data(f)}" for f in FAMILIES)
    if None in keys.values():
        return f"pretraining unknown: {said}"
    if () in keys.values():
        return f"one model pretrained, one not: {said}"
    return f"pretraining data differ: {said}"


def pretraining_scope(pretraining: Mapping[str, str]) -> str:
    """A pair's pretraining for a verdict's scope: "from scratch", "both pretrained on
    imagenet-1k", or each model's."""
    keys = {f: data_key(str(pretraining.get(f) or UNKNOWN)) for f in FAMILIES}
    if keys["cnn"] == keys["vit"] == ():
        return "from scratch"
    if None not in keys.values() and keys["cnn"] == keys["vit"]:
        return f"both pretrained on {pretraining['cnn']}"
    return ", ".join(f"{FAMILY_NAMES[f]} pretraining {pretraining.get(f) or UNKNOWN}"
                     for f in FAMILIES)  # fmt: skip
