"""Configuration: one frozen dataclass per stage, composed into `CompareConfig`.

Every field carries its help text, so the CLI flags, `--config FILE` keys and the `config.json`
written into each run come from one definition. Field names are unique across stages, which lets
a config file be flat (the same keys as the flags) or grouped by stage (as `config.json` is).
Unknown keys are errors, never silently ignored.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .budgets import parse_budget
from .errors import CnnvitError

# The vocabulary of the runtime settings (runtime.py resolves them).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda", "mps")
ATTENTIONS = ("auto", "eager", "sdpa")
# The two model families, in the order runs, reports and messages take them, and their names.
FAMILIES = ("cnn", "vit")
FAMILY_NAMES = {"cnn": "CNN", "vit": "ViT"}
# --adapt: how a pretrained model is adapted (presets only train in full).
ADAPT_MODES = ("probe", "head", "full")
# --adapt probe,full: a linear probe and a full fine-tune of each model in one run, compared.
ADAPT_BOTH = "probe,full"
# --lr: tuned per model ("auto"), each family's usual rate untuned ("usual"), a number for both,
# or one number per family ("cnn=2e-3,vit=5e-4"; a study reuses its pair's tuned rates so).
LR_WORDS = ("auto", "usual")

# --patch-size auto: a ViT preset's patch covers 4x4 pixels of the images at their own size
# (rounded up to a multiple of 16, at least 16), so small images shown at --image-size get the
# tokens their own pixels hold, not copies of them (presets.py's patch is 4).
PRESET_PATCH = 4
NATIVE_SIZE_STEP = 16

REPORTERS = ("none", "tensorboard", "trackio", "wandb")  # accelerate's tracker names
# --pretraining: what each model was pretrained on (cnnvit.pretraining reads the rest).
SCRATCH = "none (trained from scratch)"
UNKNOWN = "unknown"
_NONE_WORDS = ("none", "scratch", "from-scratch")


def _opt(default: Any, help: str, **extra: Any) -> Any:  # noqa: A002 - mirrors argparse's name
    """A field with its help text; `extra` holds `aliases` (other names of the flag and config
    key, as the Hugging Face examples spell them), `choices`, `flag` (the flag's main name),
    `auto` (the value may be a word or a number), `words` (those words; default "auto") and
    `integer` (a whole number is kept as an int)."""
    return field(default=default, metadata={"help": help, **extra})


@dataclass(frozen=True)
class DataConfig:
    """Which images to use and how to split them."""

    dataset: str = _opt(
        "digits",
        "'digits' (built in, offline), a Hugging Face hub dataset id, a folder with one "
        "subfolder per class, or a folder holding MNIST-style IDX files",
        aliases=("dataset_name",),
    )
    image_column: str | None = _opt(
        None, "image column of a hub dataset (found if omitted)", aliases=("image_column_name",)
    )
    label_column: str | None = _opt(
        None, "label column of a hub dataset (found if omitted)", aliases=("label_column_name",)
    )
    validation_fraction: float = _opt(
        0.1,
        "fraction of the training images held out for validation, when the dataset has none",
        aliases=("train_val_split",),
    )
    test_fraction: float = _opt(
        0.2, "fraction of all images held out for testing, when the dataset has no test split"
    )
    max_train_samples: int | None = _opt(
        None, "use at most this many training images (a stratified subset)"
    )
    max_eval_samples: int | None = _opt(
        None, "use at most this many validation and test images each (a stratified subset)"
    )
    train_fraction: float = _opt(
        1.0,
        "train on this share of the training split (a stratified subset, nested: a smaller "
        "share is always inside a larger one with the same --split-seed)",
    )
    split_seed: int = _opt(
        0,
        "seed of the train/validation/test split and of subsets; kept fixed while --seed varies "
        "so that every training seed is tested on the same images",
    )
    streaming: bool = _opt(
        False,
        "hub datasets and image folders: read each split as a stream, shuffled (bounded buffer) "
        "and cut to the images the caps need, spooled once to disk, instead of downloading "
        "the whole dataset first",
    )


@dataclass(frozen=True)
class ModelsConfig:
    """The two models compared."""

    cnn: str = _opt(
        "auto",
        "CNN: a preset name (see `cnnvit models`), hub id or folder; auto: the ResNet preset "
        "nearest --vit by --match (both auto: vit-micro's partner, resnet-micro by params)",
    )
    vit: str = _opt(
        "auto",
        "ViT: a preset name (see `cnnvit models`), hub id or folder; auto: the ViT preset "
        "nearest --cnn by --match (both auto: vit-micro)",
    )
    image_size: int = _opt(
        32, "input size in pixels for presets (hub models use their own processor's size)"
    )
    patch_size: int | str = _opt(
        "auto",
        "patch side in pixels of ViT presets: auto (4, or for images smaller than --image-size "
        "a patch covering 4x4 of their own pixels, their size rounded up to a multiple of 16: "
        "8x8 digits at 32 px get 8-px patches, 16 tokens instead of 64) or a number",
        auto=True,
        integer=True,
    )
    match: str = _opt(
        "params",
        "what the pair is matched on: params (parameter counts) or flops (FLOPs per image), "
        "each within 15%; an auto side is the nearest preset on it, and a named pair outside "
        "the tolerance is run and reported as unmatched",
    )
    hub_pair: str | None = _opt(
        None,
        "a curated hub pair for --cnn and --vit (see `cnnvit models --hub`: parameters, FLOPs, "
        "pretraining data and licence of each), e.g. resnet50-deit-s",
    )
    pretraining: str = _opt(
        "",
        "what hub or folder models were pretrained on, where their model card does not say (or "
        "says wrongly): cnn=imagenet-1k,vit=unknown (datasets joined by +; none: from scratch); "
        "read from each model card's datasets otherwise, presets are from scratch",
    )


@dataclass(frozen=True)
class TrainConfig:
    """One training recipe, applied identically to both models."""

    epochs: int = _opt(20, "training epochs for each model", aliases=("num_train_epochs",))
    budget: str = _opt(
        "epochs",
        "how long each model trains: epochs (--epochs passes; epochs:N sets N), flops:X (the "
        "whole steps that fit in X training FLOPs, forward FLOPs x 3 per image, such as "
        "flops:2e12; flops:auto is --epochs passes of the cheaper model) or time:SECONDS (that "
        "many seconds of training steps on this machine); the schedule is laid out over each "
        "model's own steps",
    )
    until_converged: bool = _opt(
        False,
        "train each model at its peak rate after warm-up until its validation accuracy stops "
        "improving (the convergence rule: no gain beyond one standard error over the last k "
        "epochs), then cool down linearly to zero over a fifth of the epochs trained; "
        "--epochs is the cap",
    )
    batch_size: int = _opt(64, "training batch size", aliases=("per_device_train_batch_size",))
    lr: float | str = _opt(
        "usual",
        "peak learning rate of AdamW: usual (each family's usual rate, untuned: 2e-3 for the "
        "CNN, 5e-4 for the ViT from scratch; pretrained models have their own fine-tuning and "
        "probe rows, models/presets.py), auto (chosen per "
        "model on the validation split, with an equal tuning budget for both), a number used "
        "for both models, or one per family (cnn=2e-3,vit=5e-4)",
        auto=True,
        words=LR_WORDS,
        per_family=True,
        aliases=("learning_rate",),
    )
    adapt: str = _opt(
        "full",
        "how a pretrained model is adapted, the same for both: probe (a linear classifier on "
        "frozen features, computed once and cached), head (the classifier and the last stage or "
        "the last quarter of the transformer blocks), full (every weight; the only mode for "
        "presets) or probe,full (both, on the same splits and seed: full is the main result, "
        "the probe's recorded beside it and their gaps compared)",
    )
    weight_decay: float | str = _opt(
        "auto", "AdamW weight decay: auto (0.05) or a number", auto=True
    )
    warmup_fraction: float | str = _opt(
        "auto",
        "fraction of training steps spent warming up the lr: auto (10%, at most 2 epochs) or a "
        "number",
        auto=True,
        aliases=("warmup_ratio",),
    )
    label_smoothing: float | str = _opt(
        "auto",
        "label smoothing of the cross-entropy loss: auto (the recipe row's 0.1 from 20 epochs, "
        "none up to 2, scaled between, rising from none at epoch 1 to that at the last) or a "
        "number, held constant",
        auto=True,
        aliases=("label_smoothing_factor",),
    )
    augment_strength: float | str = _opt(
        "auto",
        "scale of the augmentation's magnitudes: auto (1 from 20 epochs, 0 up to 2, scaled "
        "between, rising with label smoothing) or a number, held constant (1: +-10 degrees, "
        "+-10% shift, 0.9-1.1 scale)",
        auto=True,
    )
    grad_clip_norm: float = _opt(
        1.0,
        "clip the gradient norm to this (0: no clipping)",
        aliases=("max_grad_norm", "clip_grad"),
    )
    augment: bool = _opt(
        True, "random affine augmentation (small rotation, scale and shift) on batches"
    )
    hflip: bool = _opt(False, "also flip images left-right (off: it changes what digits mean)")
    seed: int = _opt(0, "training seed: initial weights, data order and augmentation")
    device: str = _opt("auto", "auto: CUDA, then Apple MPS, then the CPU", choices=DEVICES)
    precision: str = _opt(
        "auto",
        "auto (bf16 where the hardware runs it natively, else fp32 on a CPU and fp16 on an older "
        "GPU); fp16 trains with a gradient scaler and needs a GPU",
        choices=PRECISIONS,
    )
    attention: str = _opt(
        "auto", "ViT attention: auto (fastest measured for the device), eager or sdpa",
        choices=ATTENTIONS,
    )  # fmt: skip
    compile: bool = _opt(False, "torch.compile both models (slow start, faster steps)")
    eval_batch_size: int | str = _opt(
        "auto",
        "batch size for evaluation, feature extraction and inference timing: auto (512 up to "
        "64 px, fewer for larger images: a power of two near 512 x 64 x 64 pixels, at least 8; "
        "32 at 224 px) or a number",
        auto=True,
        integer=True,
        aliases=("per_device_eval_batch_size",),
    )
    report_to: str = _opt(
        "none",
        "experiment tracker for per-epoch loss, accuracy and learning rate, through accelerate: "
        "tensorboard (written to RUN/tracking), trackio, wandb or none",
        choices=REPORTERS,
    )


@dataclass(frozen=True)
class CompareConfig:
    """Everything `cnnvit compare` needs."""

    data: DataConfig = field(default_factory=DataConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output: str | None = _opt(
        None, "run directory to create (default: runs/<time>-<cnn>-vs-<vit>)",
        flag="output_dir", aliases=("output_dir",),
    )  # fmt: skip
    probes: str | None = _opt(
        None,
        "probes to run on the finished run: all, or a comma list of calibration, robustness, "
        "locality, explanations, longrange (also later: `cnnvit analyze RUN`)",
    )

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict, as written to config.json."""
        return dataclasses.asdict(self)


STUDY_BUDGETS = ("steps", "epochs")
STUDY_EXECUTORS = ("local", "ray")  # where the cells train (cnnvit.study.executors)


@dataclass(frozen=True)
class StudyConfig:
    """What `cnnvit study` repeats `compare` over: training seeds x training fractions x pairs.

    `compare` is the one recipe every cell shares (its split seed fixes the test images); a cell
    changes only its training seed, training fraction, pair and, under budget "steps", epochs.
    Built from flags or a file by `cnnvit.study.grid.build_study_config`.
    """

    seeds: tuple[int, ...] = _opt((0, 1, 2), "training seeds, comma-separated")
    fractions: tuple[float, ...] = _opt(
        (0.25, 0.5, 1.0),
        "shares of the training split, comma-separated (0.25 or 25%); nested: each smaller "
        "subset lies inside every larger one",
    )
    pairs: tuple[str, ...] = _opt(
        (), "preset pair sizes, comma-separated (nano, micro, mini), each paired by --match; "
        "default: the --cnn and --vit pair",
    )  # fmt: skip
    budget: str = _opt(
        "steps",
        "steps: every cell takes as many optimizer steps as the full split does in --epochs (a "
        "smaller subset runs more epochs, at most --max-epochs); epochs (or epochs:N): every "
        "cell runs --epochs; flops:X or time:SECONDS: each model of every cell trains for X "
        "training FLOPs or that many seconds, as compare's --budget (flops:auto: --epochs passes "
        "of the cell's own images by the cheaper model)",
    )
    max_epochs: int = _opt(100, "most epochs a cell may run under --budget steps")
    quick: bool = _opt(False, "a fast, smaller study: nano pair at 16 px, fewer epochs")
    executor: str = _opt(
        "local",
        "local: the cells one after another here; ray: each cell as a Ray task, here or on the "
        "cluster RAY_ADDRESS names (pip install 'cnnvit[ray]'; workers share this filesystem)",
        choices=STUDY_EXECUTORS,
    )
    cell_cpus: float = _opt(
        1.0, "CPUs Ray reserves for each cell under --executor ray (the cell's torch threads)"
    )
    cell_gpus: float = _opt(
        0.0, "GPUs Ray reserves for each cell under --executor ray (0.5: two cells share one GPU)"
    )
    output: str | None = _opt(
        None, "study directory to create, or to continue if it holds this study "
        "(default: studies/<time>-<dataset>)", flag="output_dir", aliases=("output_dir",),
    )  # fmt: skip
    compare: CompareConfig = field(default_factory=CompareConfig)

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict, as written to study.json (tuples become lists there)."""
        return dataclasses.asdict(self)


STAGES: dict[str, type] = {"data": DataConfig, "models": ModelsConfig, "train": TrainConfig}


def stage_fields() -> dict[str, tuple[str, dataclasses.Field]]:
    """Map every flag name (field name) to its stage and dataclass field."""
    table: dict[str, tuple[str, dataclasses.Field]] = {}
    for stage, cls in STAGES.items():
        for f in fields(cls):
            table[f.name] = (stage, f)
    for f in fields(CompareConfig):
        if f.name not in STAGES:
            table[f.name] = ("", f)
    return table


def _coerce(name: str, value: Any, f: dataclasses.Field) -> Any:
    """Check a config value against the field's type; ints are accepted for floats."""
    if value is None:
        if f.default is None or "None" in str(f.type):
            return None
        raise CnnvitError(f"config key '{name}' needs a value, not null (empty)")
    if f.metadata.get("auto"):  # "auto" or a number (the CLI and YAML may give "3e-4")
        words = f.metadata.get("words", ("auto",))
        if value in words:
            return value
        if f.metadata.get("per_family") and isinstance(value, str) and "=" in value:
            return format_family_rates(parse_family_rates(value, name))
        try:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
            if f.metadata.get("integer") and number.is_integer():
                return int(number)  # a whole size in pixels, as the flag takes it
            return number
        except (TypeError, ValueError):
            number_kind = "a number" + (
                " (or one per family, cnn=2e-3,vit=5e-4)" if f.metadata.get("per_family") else ""
            )
            message = (
                f"config key '{name}' must be {', '.join(words)} or {number_kind}, not {value!r}"
            )
            raise CnnvitError(message) from None
    default = f.default
    kind = type(default) if default is not None and default is not dataclasses.MISSING else None
    if kind is None:
        kind = int if "int" in str(f.type) else str
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is float and isinstance(value, str):  # YAML reads 5e-4 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if kind is bool and not isinstance(value, bool):
        raise CnnvitError(f"config key '{name}' must be true or false, not {value!r}")
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise CnnvitError(f"config key '{name}' must be a {kind.__name__}, not {value!r}")
    return value


def field_aliases() -> dict[str, str]:
    """Map every other name of a field (`learning_rate`, `output_dir`, ...) to the field's name."""
    return {
        alias: name
        for name, (_, f) in stage_fields().items()
        for alias in f.metadata.get("aliases", ())
    }


def flatten(values: dict[str, Any]) -> dict[str, Any]:
    """Stage-grouped values ({"train": {"epochs": 3}}) as flat field names ({"epochs": 3});
    kebab spellings and aliases (`learning-rate`, `learning_rate`) become the field's name."""
    aliases = field_aliases()
    flat: dict[str, Any] = {}
    spelled: dict[str, str] = {}  # field name -> the key that set it
    for key, value in values.items():
        items = value.items() if key in STAGES and isinstance(value, dict) else [(key, value)]
        for name, item in items:
            if not isinstance(name, str):  # YAML reads `1:` or `~:` as a number or null key
                raise CnnvitError(f"config key {name!r} is not a setting name (such as epochs)")
            name = name.replace("-", "_")
            canonical = aliases.get(name, name)
            if spelled.setdefault(canonical, name) != name:
                first = spelled[canonical]
                raise CnnvitError(f"config keys '{first}' and '{name}' name the same setting")
            flat[canonical] = item
    return flat


def build_config(values: dict[str, Any]) -> CompareConfig:
    """Build a `CompareConfig` from flat or stage-grouped values; unknown keys are errors."""
    flat = resolve_hub_pair(flatten(values))
    spec = str(flat.get("budget", "")).strip().lower()
    amount = spec.partition(":")[2]
    if spec.startswith("epochs:") and amount.isdigit() and "epochs" not in flat:
        flat["epochs"] = int(amount)  # epochs:N is --epochs N (validate checks they agree)
    table = stage_fields()
    grouped: dict[str, dict[str, Any]] = {stage: {} for stage in STAGES}
    top: dict[str, Any] = {}
    for name, value in flat.items():
        if name not in table:
            known = ", ".join(sorted(table))
            raise CnnvitError(f"unknown config key '{name}': known keys are {known}")
        stage, f = table[name]
        value = _coerce(name, value, f)
        (grouped[stage] if stage else top)[name] = value
    config = CompareConfig(
        data=DataConfig(**grouped["data"]),
        models=ModelsConfig(**grouped["models"]),
        train=TrainConfig(**grouped["train"]),
        **top,
    )
    validate(config)
    return config


def parse_family_rates(text: str, name: str = "lr") -> dict[str, float]:
    """{"cnn": 0.002, "vit": 0.0005} from "cnn=2e-3,vit=5e-4": one positive rate per family."""
    rates: dict[str, float] = {}
    for item in text.replace(" ", "").split(","):
        family, _, number = item.partition("=")
        try:
            rate = float(number)
        except ValueError:
            rate = float("nan")
        if family not in FAMILIES or family in rates or not rate > 0:
            break
        rates[family] = rate
    if set(rates) != set(FAMILIES) or len(text.replace(" ", "").split(",")) != len(FAMILIES):
        raise CnnvitError(
            f"--{name.replace('_', '-')} {text!r}: give one positive rate per family, "
            "e.g. cnn=2e-3,vit=5e-4 (or auto, usual, or one number for both)"
        )
    return rates


def format_family_rates(rates: dict[str, float]) -> str:
    """The canonical "cnn=0.002,vit=0.0005" spelling, so equal rates compare equal."""
    return ",".join(f"{family}={rates[family]!r}" for family in FAMILIES)


def family_lr(option: float | str, family: str) -> float | str:
    """The --lr value one family trains with: a word, the shared number, or its own rate."""
    if isinstance(option, str) and option not in LR_WORDS:
        return parse_family_rates(option)[family]
    return option


def parse_pretraining_option(text: str) -> dict[str, str]:
    """`--pretraining cnn=imagenet-1k,vit=unknown` as {family: data}; one line if malformed."""
    given: dict[str, str] = {}
    for item in (p.strip() for p in text.split(",") if p.strip()):
        family, sep, value = (s.strip() for s in item.partition("="))
        if not sep or family.lower() not in FAMILIES or not value:
            raise CnnvitError(
                f"--pretraining takes cnn=DATA,vit=DATA (DATA: a dataset name such as "
                f"imagenet-1k, several joined by +, none or unknown), not '{text}'"
            )
        word = value.lower()
        given[family.lower()] = (
            SCRATCH if word in _NONE_WORDS else UNKNOWN if word == UNKNOWN else value
        )
    return given


def validate(config: CompareConfig) -> None:
    """Reject settings that cannot work, with one line saying which and why."""
    t, d, m = config.train, config.data, config.models
    if t.epochs < 1:
        raise CnnvitError(f"--epochs must be at least 1, not {t.epochs}")
    budget = parse_budget(t.budget, t.epochs)
    if budget.mode == "epochs" and budget.value != t.epochs:
        raise CnnvitError(f"--budget {t.budget} and --epochs {t.epochs} disagree: give one of them")
    if t.until_converged and budget.mode != "epochs":
        raise CnnvitError(
            f"--until-converged trains to a plateau, capped by --epochs: it does not combine "
            f"with --budget {t.budget}"
        )
    if budget.mode != "epochs" and t.adapt == "probe":
        raise CnnvitError(
            f"--budget {t.budget}: a probe trains on cached features, so its FLOPs and time "
            "are not the model's; use --budget epochs with --adapt probe"
        )
    if t.batch_size < 1 or (t.eval_batch_size != "auto" and t.eval_batch_size < 1):
        raise CnnvitError("--batch-size and --eval-batch-size must be at least 1")
    if t.adapt not in (*ADAPT_MODES, ADAPT_BOTH):
        if set(t.adapt.replace(" ", "").split(",")) <= set(ADAPT_MODES):
            raise CnnvitError(
                f"--adapt {t.adapt}: the one combination a run compares is {ADAPT_BOTH}; "
                "run other modes one per compare"
            )
        raise CnnvitError(f"--adapt must be one of {', '.join(ADAPT_MODES)}, not '{t.adapt}'")
    if isinstance(t.lr, str) and t.lr not in LR_WORDS:
        parse_family_rates(t.lr, "lr")
    elif t.lr not in LR_WORDS and not t.lr > 0:
        raise CnnvitError(f"--lr must be auto, usual or positive, not {t.lr}")
    if t.warmup_fraction != "auto" and not 0 <= t.warmup_fraction < 1:
        raise CnnvitError("--warmup-fraction must be in [0, 1)")
    if t.label_smoothing != "auto" and not 0 <= t.label_smoothing < 1:
        raise CnnvitError("--label-smoothing must be in [0, 1)")
    for name in ("weight_decay", "augment_strength"):
        value = getattr(t, name)
        if value != "auto" and not value >= 0:
            raise CnnvitError(f"--{name.replace('_', '-')} must be auto or at least 0, not {value}")
    if t.device not in DEVICES:
        raise CnnvitError(f"--device must be one of {', '.join(DEVICES)}, not '{t.device}'")
    if t.attention not in ATTENTIONS:
        raise CnnvitError(
            f"--attention must be one of {', '.join(ATTENTIONS)}, not '{t.attention}'"
        )
    if t.report_to not in REPORTERS:
        choices = ", ".join(REPORTERS)
        raise CnnvitError(f"--report-to must be one of {choices}, not '{t.report_to}'")
    if t.grad_clip_norm < 0:
        raise CnnvitError("--grad-clip-norm must be 0 (off) or positive")
    if t.precision not in PRECISIONS:
        raise CnnvitError(
            f"--precision must be one of {', '.join(PRECISIONS)}, not '{t.precision}'"
        )
    if not 0 < d.validation_fraction < 1 or not 0 < d.test_fraction < 1:
        raise CnnvitError("--validation-fraction and --test-fraction must be between 0 and 1")
    if not 0 < d.train_fraction <= 1:
        raise CnnvitError(f"--train-fraction must be in (0, 1], not {d.train_fraction}")
    for name in ("max_train_samples", "max_eval_samples"):
        value = getattr(d, name)
        if value is not None and value < 1:
            raise CnnvitError(f"--{name.replace('_', '-')} must be at least 1, not {value}")
    if m.image_size < 8:
        raise CnnvitError(f"--image-size must be at least 8 pixels, not {m.image_size}")
    if m.patch_size != "auto" and (
        m.patch_size < 1 or m.patch_size != int(m.patch_size) or m.image_size % m.patch_size
    ):
        raise CnnvitError(
            f"--patch-size must be auto or a whole number of pixels dividing --image-size "
            f"{m.image_size}, not {m.patch_size}"
        )
    if m.match not in ("params", "flops"):
        raise CnnvitError(f"--match must be params or flops, not '{m.match}'")
    if m.pretraining:
        parse_pretraining_option(m.pretraining)


def resolve_hub_pair(values: dict[str, Any]) -> dict[str, Any]:
    """Flat config values with --hub-pair's two hub ids as --cnn and --vit (an unknown pair
    name, or --cnn/--vit naming other models beside it, is one line)."""
    name = values.get("hub_pair")
    if not name:
        return values
    from .models.hub_pairs import hub_pair

    pair = hub_pair(str(name))
    for family, model in (("cnn", pair.cnn), ("vit", pair.vit)):
        if values.get(family, "auto") not in ("auto", model.id):
            raise CnnvitError(
                f"--hub-pair {pair.name} names the {family.upper()} ({model.id}): give either "
                f"--hub-pair or --{family}, not both"
            )
    return {**values, "hub_pair": pair.name, "cnn": pair.cnn.id, "vit": pair.vit.id}


def auto_patch_size(native_side: int, image_size: int) -> int:
    """--patch-size auto for images whose longer side is `native_side` pixels, shown to the ViT
    at `image_size` (see the flag): PRESET_PATCH unless the images are smaller than that."""
    own = max(NATIVE_SIZE_STEP, -(-native_side // NATIVE_SIZE_STEP) * NATIVE_SIZE_STEP)
    if own >= image_size:
        return PRESET_PATCH
    patch = PRESET_PATCH * image_size // own
    return patch if image_size % patch == 0 else PRESET_PATCH


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON config file into a dict (keys as the flags, or grouped by stage)."""
    path = Path(path)
    if not path.is_file():
        raise CnnvitError(f"config file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        first = str(err).splitlines()[0]
        raise CnnvitError(f"config file {path} is not valid YAML/JSON: {first}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CnnvitError(f"config file {path} must hold a mapping of keys to values")
    if data.get("kind") == "cnnvit-run" and isinstance(data.get("config"), dict):
        data = data["config"]  # a run's run.json: its config section, grouped by stage
    data = {k: v for k, v in data.items() if k != "resolved"}  # config.json's extra section
    return data


def parse_probes(text: str | None) -> list[str] | None:
    """`--probes` as a list: None for none, [] for all, else the names given."""
    if not text or text.strip().lower() == "none":
        return None
    if text.strip().lower() == "all":
        return []
    return [name.strip() for name in text.split(",") if name.strip()]
