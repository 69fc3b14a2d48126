"""The grid of a study: which cells exist and what each one trains.

A study is one compare recipe (`StudyConfig.compare`) repeated over pairs x training fractions x
training seeds on one fixed test split (the recipe's split seed). `build_study_config` turns flat
values (flags, a config file, API keywords) into a `StudyConfig`; precedence is the study's own
defaults < the `--quick` preset < config file < flags. `expand_grid` lists the cells, with the
epochs each one runs.

Epochs per cell (the `budget` setting). Under "steps" (the default) every cell takes as many
optimizer steps as the full training split takes in `--epochs`, so a 25% subset runs about four
times the epochs. The question a data-efficiency curve asks is what a model makes of N images
given the same optimisation: with a fixed epoch count instead, a 10% subset would also get a
tenth of the updates, and a model that merely converges more slowly (a ViT, per the folk table)
would look data-hungry for the wrong reason. Equal steps keeps the compute per cell equal too,
so every cell costs about the same and the progress estimate is even. The recipe's regularisation
is budget-scaled by passes over the data (training/recipe.py), so the many-epoch small cells get
the augmentation and label smoothing a long run needs. `max_epochs` caps the epochs of very small
subsets. Under "epochs" every cell runs `--epochs` (the classic fixed-epoch curve).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from typing import Any

from ..budgets import BUDGET_MODES
from ..config import STUDY_BUDGETS, StudyConfig, build_config, field_aliases, flatten
from ..errors import CnnvitError

# Compare settings a study changes from compare's defaults (unless given). The default study on
# digits must finish in under 10 minutes on 2 CPU cores (BENCHMARKS.md, "Study"): 3 seeds x 3
# fractions of the micro pair at 6 full-split epochs per cell under the "steps" budget. Each
# family's learning rate is tuned on validation once per pair (--lr auto: in the pair's cell at
# the largest fraction, first seed, with the same counted budget for both models) and reused by
# the pair's other cells, so each family trains at a rate chosen for it and the study pays the
# tuning once per pair (a quarter of one cell's training budget), not in every cell.
STUDY_DEFAULTS: dict[str, Any] = {"epochs": 6, "lr": "auto"}
# --until-converged: each model trains to a plateau, so --epochs is only a cap, by default this.
UNTIL_CONVERGED_EPOCHS = 60
# --quick: the nano pair at 16 px (digits are 8x8 images, so nothing is lost by the resize),
# 3 seeds x 3 fractions, 4 full-split epochs per cell; under 3 minutes on 2 CPU cores.
QUICK_COMPARE: dict[str, Any] = {"image_size": 16, "epochs": 4}
QUICK_STUDY: dict[str, Any] = {"pairs": ("nano",)}
# Set by the grid per cell, so never part of the shared recipe.
GRID_KEYS = {"seed": "--seeds", "train_fraction": "--fractions"}
PAIR_SIZES = ("nano", "micro", "mini")


@dataclass(frozen=True)
class Pair:
    """One CNN/ViT pair of a study: its label (a cell id's first part) and the two models."""

    name: str
    cnn: str
    vit: str


@dataclass(frozen=True)
class Cell:
    """One cell: a pair trained with one seed on one training fraction for `epochs` epochs."""

    pair: Pair
    fraction: float
    seed: int
    epochs: int
    n_train: int  # training images the fraction gives (as data/prepare.py rounds it)

    @property
    def id(self) -> str:
        return cell_id(self.pair.name, self.fraction, self.seed)

    @property
    def images_trained(self) -> int:
        """Images both models train on in this cell: its weight in the progress estimate."""
        return 2 * self.epochs * self.n_train

    def settings(self) -> dict[str, Any]:
        """The compare settings this cell changes from the study's recipe."""
        return {
            "cnn": self.pair.cnn,
            "vit": self.pair.vit,
            "seed": self.seed,
            "train_fraction": self.fraction,
            "epochs": self.epochs,
        }


def cell_id(pair: str, fraction: float, seed: int) -> str:
    """`<pair>-f<percent>-s<seed>`, e.g. micro-f25-s0 (the cell's folder under cells/)."""
    return f"{pair}-f{100 * fraction:g}-s{seed}"


def _items(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list | tuple):
        return list(value)
    return [value]


def parse_seeds(value: Any) -> tuple[int, ...]:
    """Seeds from "0,1,2", a list or one int; sorted, each once."""
    try:
        seeds = [int(v) for v in _items(value) if not isinstance(v, bool | float)]
    except (TypeError, ValueError):
        seeds = []
    if not seeds or len(seeds) != len(_items(value)):
        raise CnnvitError(f"--seeds must be whole numbers separated by commas, not {value!r}")
    return tuple(sorted(set(seeds)))


def parse_fractions(value: Any) -> tuple[float, ...]:
    """Fractions from "0.1,0.25,1", "10%,25%,100%" or a list; each in (0, 1], sorted, once."""
    out = []
    for item in _items(value):
        text = str(item).strip()
        try:
            number = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
        except ValueError:
            raise CnnvitError(
                f"--fractions must be numbers such as 0.25 or 25%, not {item!r}"
            ) from None
        if not 0 < number <= 1:
            raise CnnvitError(f"a training fraction must be in (0, 1] (or 1% to 100%), not {item}")
        out.append(round(number, 6))
    if not out:
        raise CnnvitError("--fractions needs at least one training fraction")
    return tuple(sorted(set(out)))


def parse_pairs(value: Any) -> tuple[str, ...]:
    """Pair sizes from "micro,mini" or a list; each a preset size, in the order given, once."""
    pairs = [str(p).strip().lower() for p in _items(value)]
    unknown = [p for p in pairs if p not in PAIR_SIZES]
    if unknown:
        raise CnnvitError(
            f"unknown pair '{unknown[0]}': --pairs takes preset sizes ({', '.join(PAIR_SIZES)})"
        )
    return tuple(dict.fromkeys(pairs))


_STUDY_FIELDS = {f.name for f in fields(StudyConfig)} - {"compare"}
_PARSERS = {"seeds": parse_seeds, "fractions": parse_fractions, "pairs": parse_pairs}


def _study_key(key: str) -> str:
    key = key.replace("-", "_")
    return "output" if key == "output_dir" else key


def build_study_config(values: dict[str, Any]) -> StudyConfig:
    """A `StudyConfig` from flat values: study keys, compare keys (flat or by stage) or both.

    A "compare" entry (as study.json stores it) holds the recipe grouped by stage. The grid sets
    each cell's training seed and fraction, so `seed` and `train_fraction` are refused.
    """
    study: dict[str, Any] = {}
    saved: dict[str, Any] = {}  # a study.json "compare" entry: its seed and fraction are unused
    given: dict[str, Any] = {}
    for key, value in values.items():
        if key == "compare" and isinstance(value, dict):
            saved = flatten(value)
        elif _study_key(key) in _STUDY_FIELDS:
            study[_study_key(key)] = value
        else:
            given[key] = value
    given = flatten(given)
    if given.get("seed") is not None:
        raise CnnvitError("a study repeats training seeds: give --seeds instead of --seed")
    if given.get("train_fraction", 1.0) != 1.0:
        raise CnnvitError("a study sets the training share per cell: give --fractions instead")
    compare = {**saved, **given}
    for key in ("output", *GRID_KEYS):  # chosen per cell by the study
        compare.pop(key, None)
    quick = bool(study.get("quick", False))
    if not isinstance(study.get("quick", False), bool):
        raise CnnvitError("config key 'quick' must be true or false")
    study = {**(QUICK_STUDY if quick else {}), **study}
    for key, parse in _PARSERS.items():
        if key in study:
            study[key] = parse(study[key])
    if study.get("pairs") and ({"cnn", "vit", "hub_pair"} & set(given)):
        raise CnnvitError(
            "give either --pairs or --cnn/--vit (or --hub-pair) for a study, not both: --pairs "
            "names preset sizes"
        )
    budget = str(study.get("budget", "steps")).strip().lower()
    mode, _, amount = budget.partition(":")
    if mode not in STUDY_BUDGETS + BUDGET_MODES or (mode == "steps" and amount):
        choices = ", ".join((*STUDY_BUDGETS, "epochs:N", "flops:X", "time:SECONDS"))
        raise CnnvitError(f"--budget must be one of {choices}, not '{budget}'")
    if mode == "epochs" and amount:  # epochs:N: every cell runs N epochs
        if not amount.isdigit() or int(amount) < 1:
            raise CnnvitError(f"--budget epochs:N takes a whole number of epochs, not {amount}")
        if int(compare.setdefault("epochs", int(amount))) != int(amount):
            raise CnnvitError(f"--budget {budget} and --epochs {compare['epochs']} disagree")
        budget = "epochs"
    elif mode in ("flops", "time"):  # every cell's models train to compare's --budget
        compare["budget"] = budget
    study["budget"] = budget
    defaults = {**STUDY_DEFAULTS, **(QUICK_COMPARE if quick else {})}
    if compare.get("until_converged"):  # --epochs is a cap then: a generous one by default
        defaults["epochs"] = UNTIL_CONVERGED_EPOCHS
    recipe = build_config({**defaults, **compare})
    max_epochs = study.get("max_epochs", StudyConfig.max_epochs)
    if isinstance(max_epochs, bool) or not isinstance(max_epochs, int) or max_epochs < 1:
        raise CnnvitError(f"--max-epochs must be a whole number of at least 1, not {max_epochs!r}")
    output = study.get("output")
    return StudyConfig(**{**study, "output": None if output is None else str(output)},
                       compare=recipe)  # fmt: skip


def study_values(config: StudyConfig) -> dict[str, Any]:
    """The flat values `build_study_config` rebuilds `config` from (as study.json keeps them)."""
    values = config.to_dict()
    values["compare"] = {k: v for k, v in values["compare"].items() if k != "output"}
    return values


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", name.rstrip("/").split("/")[-1])[:40]


def resolve_pairs(config: StudyConfig) -> list[Pair]:
    """The study's pairs: each size's ViT preset with its CNN partner by --match, or the recipe's
    --cnn/--vit pair (named by its preset size when both are of one size)."""
    from ..models.pairing import partner, resolve_pair
    from ..models.presets import PRESETS

    models = config.compare.models
    size_px = models.image_size
    if config.pairs:
        return [
            Pair(size, partner(f"vit-{size}", "cnn", models.match, size_px), f"vit-{size}")
            for size in config.pairs
        ]  # fmt: skip
    cnn, vit = resolve_pair(models.cnn, models.vit, models.match, size_px)
    sizes = {PRESETS[n].size for n in (cnn, vit) if n in PRESETS}
    both_presets = cnn in PRESETS and vit in PRESETS
    name = sizes.pop() if both_presets and len(sizes) == 1 else f"{_slug(cnn)}-vs-{_slug(vit)}"
    name = models.hub_pair or name  # a curated hub pair by its own name
    return [Pair(name, cnn, vit)]


def train_size(n_split: int, max_train_samples: int | None, fraction: float) -> int:
    """Training images at `fraction`, rounded as data/prepare.py rounds them."""
    count = n_split if max_train_samples is None else min(n_split, max_train_samples)
    return int(round(count * fraction))


def cell_epochs(config: StudyConfig, n_full: int, n_cell: int) -> int:
    """Epochs of a cell of `n_cell` images: the full split's optimizer steps under budget
    "steps" (at most `max_epochs`), or `--epochs` under the others (a FLOP or time budget
    sets each model's steps itself)."""
    epochs = config.compare.train.epochs
    if config.budget != "steps" or n_cell >= n_full:  # epochs, or a FLOP or time budget
        return epochs
    batch = config.compare.train.batch_size
    steps = epochs * math.ceil(n_full / batch)
    scaled = round(steps / math.ceil(n_cell / batch))
    return max(epochs, min(scaled, max(config.max_epochs, epochs)))


def expand_grid(config: StudyConfig, n_split: int) -> list[Cell]:
    """Every cell of the study, pair by pair, smallest fraction first, then by seed.

    `n_split` is the size of the training split before any subset (the study reads it once).
    """
    cap = config.compare.data.max_train_samples
    n_full = train_size(n_split, cap, 1.0)
    cells = []
    for pair in resolve_pairs(config):
        for fraction in config.fractions:
            n_cell = train_size(n_split, cap, fraction)
            epochs = cell_epochs(config, n_full, n_cell)
            for seed in config.seeds:
                cells.append(Cell(pair, fraction, seed, epochs, n_cell))
    return cells


def grid_differences(saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """What differs between two studies' recipes (flat keys), e.g. ["epochs: 6 there, 8 here"].

    The grid (seeds, fractions, pairs), `quick`, `output` and the executor with its resources
    per cell (where cells train, not what they compute) may differ: a study continued with more
    seeds or fractions grows; everything a cell's result depends on may not.
    """
    ignore = {"seeds", "fractions", "pairs", "quick", "output", "executor", "cell_cpus",
              "cell_gpus", "compare"}  # fmt: skip
    out = [
        f"{key}: {saved.get(key)!r} there, {wanted.get(key)!r} here"
        for key in sorted(set(saved) | set(wanted))
        if key not in ignore and saved.get(key) != wanted.get(key)
    ]
    aliases = field_aliases()
    a, b = flatten(saved.get("compare") or {}), flatten(wanted.get("compare") or {})
    for key in sorted(set(a) | set(b)):
        if aliases.get(key, key) != "output" and a.get(key) != b.get(key):
            out.append(f"{key}: {a.get(key)!r} there, {b.get(key)!r} here")
    return out
