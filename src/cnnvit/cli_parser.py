"""The command line's parser: every subcommand and flag, generated from the config dataclasses.

Flags come from the config fields (config.py), so `--help`, `--config FILE` keys and run.json
always agree; each option is listed once with every spelling it accepts (timm's kebab case and
the Hugging Face examples' underscores). cli.py parses with it and calls the API.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from .config import (
    DEVICES,
    PRECISIONS,
    STAGES,
    CompareConfig,
)
from .version import __version__

# `cnnvit evaluate --batch-size` is compare's --eval-batch-size: accept that name and HF's too.
EVAL_BATCH_ALIASES = ("eval_batch_size", "per_device_eval_batch_size")


def option_strings(name: str, metadata: Mapping[str, Any]) -> list[str]:
    """Every spelling of a field's flag, main name first: kebab (timm) and underscore (the
    Hugging Face examples) forms of the name, of `flag` (a different main name) and of `aliases`."""
    names = [metadata.get("flag", name), name, *metadata.get("aliases", ())]
    flags: list[str] = []
    for each in names:
        for spelled in (each.replace("_", "-"), each.replace("-", "_")):
            if "--" + spelled not in flags:
                flags.append("--" + spelled)
    return flags


class _HelpFormatter(argparse.HelpFormatter):
    """Lists a flag's spellings once, on one line: `--lr, --learning-rate, --learning_rate LR`
    (argparse would repeat the metavar after each spelling)."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if not action.option_strings or action.nargs == 0:
            return super()._format_action_invocation(action)
        metavar = self._format_args(action, self._get_default_metavar_for_optional(action))
        return f"{', '.join(action.option_strings)} {metavar}"


def _add_config_flags(
    parser: argparse.ArgumentParser,
    stages: Sequence[str],
    defaults: Mapping[str, Any] | None = None,
    skip: frozenset[str] = frozenset(),
) -> None:
    """One flag per config field, default left unset so that only given flags override.

    `defaults` replaces the defaults the help shows (a study's own, where they differ); `skip`
    names fields another group defines (a study's own --budget takes compare's budgets too)."""
    for stage in stages:
        cls = STAGES[stage] if stage in STAGES else CompareConfig
        group = parser.add_argument_group(f"{stage} options")
        for f in dataclasses.fields(cls):
            if stage not in STAGES and f.name in STAGES or f.name in skip:
                continue
            flags = option_strings(f.name, f.metadata)
            help_text = f.metadata.get("help", "").replace("%", "%%")  # argparse formats help
            shown = (defaults or {}).get(f.name, f.default)
            if shown is not None:
                help_text += f" (default: {shown})"
            if isinstance(f.default, bool):
                group.add_argument(*flags, dest=f.name, action=argparse.BooleanOptionalAction,
                                   default=argparse.SUPPRESS, help=help_text)  # fmt: skip
                continue
            kind = (
                type(f.default) if f.default is not None else (int if "int" in str(f.type) else str)
            )
            choices = f.metadata.get("choices")  # argparse then lists them on a typo
            metavar = None if choices else f.metadata.get("flag", f.name).upper()
            group.add_argument(*flags, dest=f.name, type=kind, default=argparse.SUPPRESS,
                               choices=choices, metavar=metavar, help=help_text)  # fmt: skip


def _add_study_flags(parser: argparse.ArgumentParser) -> None:
    """The study's own flags (StudyConfig's fields); lists are comma-separated strings."""
    from .config import StudyConfig

    group = parser.add_argument_group("study options")
    for f in dataclasses.fields(StudyConfig):
        if f.name == "compare":
            continue
        flags = option_strings(f.name, f.metadata)
        default = ",".join(map(str, f.default)) if isinstance(f.default, tuple) else f.default
        help_text = f.metadata.get("help", "").replace("%", "%%")
        help_text += f" (default: {default})" if default not in (None, "") else ""
        if isinstance(f.default, bool):
            group.add_argument(*flags, dest=f.name, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=help_text)  # fmt: skip
            continue
        kind = int if isinstance(f.default, int) else str
        choices = f.metadata.get("choices")
        metavar = None if choices else f.metadata.get("flag", f.name).upper()
        group.add_argument(*flags, dest=f.name, type=kind, default=argparse.SUPPRESS,
                           choices=choices, metavar=metavar, help=help_text)  # fmt: skip


def _study_defaults() -> str:
    """How a study's recipe differs from compare's defaults, for `cnnvit study --help`."""
    from .study.grid import QUICK_COMPARE, QUICK_STUDY, STUDY_DEFAULTS

    def flags(values: dict[str, Any]) -> str:
        return " ".join(
            f"--{k.replace('_', '-')} {','.join(map(str, v)) if isinstance(v, tuple) else v}"
            for k, v in values.items()
        )

    return (f"A study's defaults differ from compare's: {flags(STUDY_DEFAULTS)}; --quick adds "
            f"{flags({**QUICK_STUDY, **QUICK_COMPARE})}. Flags given win.")  # fmt: skip


def _version() -> str:
    """cnnvit's version and those of the two libraries its results depend on most."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "not installed"

    return (f"cnnvit {__version__} (torch {installed('torch')}, "
            f"transformers {installed('transformers')})")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The `cnnvit` argument parser with all its sub-commands."""
    parser = argparse.ArgumentParser(
        prog="cnnvit",
        description="Compare a CNN and a Vision Transformer on your images, with measurements.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    compare = commands.add_parser(
        "compare", help="train a CNN and a ViT with one recipe, evaluate both, write a report",
        formatter_class=_HelpFormatter,
        description="Train a CNN and a ViT with one recipe on one dataset, evaluate both on the "
        "same test split, and write a run directory with metrics, models and a report.",
    )  # fmt: skip
    compare.add_argument(
        "--config",
        metavar="FILE",
        help="YAML or JSON file with the same keys as these flags (flags win)",
    )
    compare.add_argument(
        "--resume",
        metavar="RUN",
        help="continue an interrupted run directory from its last finished epoch, with its "
        "own settings (models it finished are kept)",
    )
    _add_config_flags(compare, ["data", "models", "train", "run"])
    scripting = compare.add_argument_group("output for scripts")
    scripting.add_argument(
        "--quiet",
        action="store_true",
        help="no progress or log lines: only errors and the report's path",
    )
    scripting.add_argument(
        "--json",
        action="store_true",
        help="print a JSON summary on stdout instead of the report's path: run "
        "directory, status, per-model test accuracy, the paired comparison",
    )

    models = commands.add_parser(
        "models", help="list the built-in presets with parameters and FLOPs (--hub: hub pairs)"
    )
    models.add_argument(
        "--hub",
        action="store_true",
        help="list curated hub pairs instead: parameters, FLOPs, pretraining data and licence of "
        "both models, and their ratios (pick one with --hub-pair NAME)",
    )

    demo = commands.add_parser(
        "demo",
        help="try a run's two models on your own images in the browser (Gradio)",
        description="Serve a web page where both models of a run classify an uploaded image or "
        "a test image, side by side with their explanation maps and the run's findings. Needs "
        "the demo extra: pip install 'cnnvit[demo]'.",
    )
    demo.add_argument("run_dir", metavar="RUN_DIR", help="a run directory made by `cnnvit compare`")
    demo.add_argument("--port", type=int, default=7860, help="port to serve on (default: 7860)")
    demo.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on; 0.0.0.0 serves other machines (default: "
        "127.0.0.1, this machine only)",
    )
    demo.add_argument(
        "--device", default="auto", choices=DEVICES, help="where the models run (default: auto)"
    )

    report = commands.add_parser("report", help="rebuild the report of a finished run or study")
    report.add_argument(
        "run_dir", metavar="RUN_DIR",
        help="a run directory made by `cnnvit compare`, or a study directory by `cnnvit study`",
    )  # fmt: skip

    analyze = commands.add_parser(
        "analyze", help="run probes (robustness, calibration, locality, ...) on a finished run",
        description="Run the probes on a finished run: each saves RUN/analyses/<probe>.json and "
        "its figures, a probe that fails leaves the others intact, and the report is rebuilt "
        "with their verdicts.",
    )  # fmt: skip
    analyze.add_argument("run_dir", metavar="RUN_DIR", help="a run directory made by compare")
    analyze.add_argument("--probes", default="all", metavar="LIST",
                         help="all (default) or a comma list of calibration, robustness, "
                         "locality, explanations, longrange")  # fmt: skip
    analyze.add_argument("--seed", type=int, default=0, help="seed of the probes' random draws")

    study = commands.add_parser(
        "study", help="repeat compare over seeds x training sizes (x pairs): verdicts with "
        "intervals", formatter_class=_HelpFormatter,
        description="Run compare over training seeds x nested training fractions (x preset "
        "pairs) on one fixed test split, and report whether each usual CNN-vs-ViT claim is "
        "supported, contradicted or inconclusive, with its interval. Run it again (same "
        "--output-dir, or --resume) to train only the cells that are not complete.",
        epilog=_study_defaults(),
    )  # fmt: skip
    study.add_argument("--config", metavar="FILE", help="YAML or JSON file with the study's "
                       "keys and compare's keys (flags win)")  # fmt: skip
    study.add_argument("--resume", metavar="STUDY_DIR",
                       help="continue the study in STUDY_DIR with its saved settings")  # fmt: skip
    _add_study_flags(study)
    from .study.grid import STUDY_DEFAULTS

    _add_config_flags(study, ["data", "models", "train"], STUDY_DEFAULTS, frozenset({"budget"}))

    evaluate = commands.add_parser(
        "evaluate", help="evaluate a saved model on a dataset's test split",
        formatter_class=_HelpFormatter,
        description="Evaluate a saved model (a run's cnn/ or vit/ folder, or any folder saved "
        "with save_pretrained) on the test split that `cnnvit compare` would use.",
    )  # fmt: skip
    evaluate.add_argument(
        "model_dir", metavar="MODEL_DIR", help="folder with config.json and weights"
    )
    _add_config_flags(evaluate, ["data"])
    evaluate.add_argument(
        "--seed", type=int, default=0, help="split seed, as in compare (default: 0)"
    )
    evaluate.add_argument(
        "--device",
        default="auto",
        choices=DEVICES,
        help="auto: CUDA, then Apple MPS, then the CPU (default: auto)",
    )
    evaluate.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="as in compare; fp16 needs a GPU (default: auto)",
    )
    evaluate.add_argument(*option_strings("batch_size", {"aliases": EVAL_BATCH_ALIASES}),
                          dest="batch_size", type=int, default=512, metavar="BATCH_SIZE",
                          help="images per forward pass (default: 512)")  # fmt: skip
    evaluate.add_argument("--json", metavar="FILE", help="also write the metrics to this JSON file")
    return parser
