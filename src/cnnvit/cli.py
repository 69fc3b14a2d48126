"""The command line: parses arguments and calls the Python API, nothing more.

Flags of `cnnvit compare` are generated from the config dataclasses (config.py), so `--help`,
`--config FILE` keys and config.json always agree. Precedence: defaults < config file < flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

# `cnnvit evaluate --batch-size` is compare's --eval-batch-size: accept that name and HF's too.
from .cli_parser import EVAL_BATCH_ALIASES, build_parser  # noqa: F401 - re-exported
from .config import (
    FAMILIES,
    CompareConfig,
    DataConfig,
    build_config,
    flatten,
    load_config_file,
)
from .errors import CnnvitError


def _quiet_libraries() -> None:
    """Keep library chatter (progress bars, torchvision fallbacks) out of the user's terminal."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import datasets  # its own switch works even when it was imported before us

    datasets.disable_progress_bars()
    logging.getLogger("accelerate").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*torchvision.*")

    def one_line(message: Any, category: Any, *_: Any, **__: Any) -> None:
        print(f"cnnvit: warning: {message}", file=sys.stderr)

    warnings.showwarning = one_line


def config_from_args(args: argparse.Namespace) -> CompareConfig:
    """The compare config from parsed flags over an optional `--config` file (flags win)."""
    values: dict[str, Any] = load_config_file(args.config) if args.config else {}
    skip = ("command", "config", "quiet", "json", "resume")
    flags = {k: v for k, v in vars(args).items() if k not in skip}
    return build_config({**flatten(values), **flags})


class _ErrorsOnly(io.TextIOBase):
    """stderr for --quiet: passes cnnvit's own error and warning lines, drops the rest."""

    def __init__(self, stream: Any) -> None:
        self.stream, self.pending = stream, ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if line.startswith("cnnvit:"):
                self.stream.write(line + "\n")
        return len(text)


def compare_summary(run_dir: Any) -> dict[str, Any]:
    """What `compare --json` prints: run directory, status, report, per-model test results."""
    from .runs import load_run

    run = load_run(run_dir)
    models = {
        family: {"name": record.name, "status": record.status,
                 "test_accuracy": record.test.get("accuracy"),
                 "test_macro_f1": record.test.get("macro_f1")}
        for family, record in run.models.items()
    }  # fmt: skip
    report = run.path / "report.html"
    return {"run_dir": str(run.path), "status": run.status,
            "report": str(report) if report.is_file() else None,
            "models": models, "comparison": run.comparison}  # fmt: skip


def _cmd_compare(args: argparse.Namespace) -> int:
    import contextlib
    import json

    from .pipeline import compare

    config = config_from_args(args)
    if args.resume and (args.config or config != build_config({})):
        raise CnnvitError("--resume continues a run with its own settings: give no other options")
    if args.quiet:
        os.environ["TQDM_DISABLE"] = "1"  # tqdm reads it for every bar
    quiet = contextlib.redirect_stderr(_ErrorsOnly(sys.stderr)) if args.quiet else None
    with quiet or contextlib.nullcontext():
        run_dir = compare(resume=args.resume) if args.resume else compare(config)
    from accelerate import PartialState

    if not PartialState().is_main_process:  # torchrun: the main process speaks for the run
        return 0
    if args.json:
        print(json.dumps(compare_summary(run_dir), indent=2))
    else:
        print(f"report: {run_dir / 'report.html'}")  # the one line a script may read
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import launch

    launch(args.run_dir, host=args.host, port=args.port, device=args.device)
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from .catalog import hub_listing, models_listing

    if getattr(args, "hub", False):
        print(hub_listing())
        return 0
    print("measuring each preset's training speed on this machine (a few steps each)...",
          file=sys.stderr)  # fmt: skip
    print(models_listing())
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import build_report

    print(f"report: {build_report(args.run_dir)}")
    return 0


def _cmd_analyze(args: argparse.Namespace) -> int:
    from .analyses import probe_names, run_probes
    from .config import parse_probes
    from .report import build_report
    from .runs import load_run

    names = parse_probes(args.probes)
    if names is None:
        raise CnnvitError("--probes none runs nothing: name probes or give all")
    probe_names(names)
    run = load_run(args.run_dir)
    if set(run.complete_models) != set(FAMILIES):
        raise CnnvitError(f"{run.path} does not hold both finished models: probes need both")
    outcomes = run_probes(run, names, seed=args.seed,
                          log=lambda line: print(line, file=sys.stderr))  # fmt: skip
    failed = [o for o in outcomes.values() if o.status != "ok"]
    print(f"report: {build_report(run.path)}")
    for outcome in failed:
        print(f"cnnvit: warning: probe {outcome.name} failed: {outcome.error}", file=sys.stderr)
    return 1 if failed and len(failed) == len(outcomes) else 0


def _cmd_study(args: argparse.Namespace) -> int:
    from .evidence import verdict_table_markdown
    from .report.study_facts import load_study
    from .study.grid import build_study_config
    from .study.runner import resume_values, run_study

    values: dict[str, Any] = load_config_file(args.config) if args.config else {}
    if args.resume:
        values = {**resume_values(args.resume), **values}
    flags = {k: v for k, v in vars(args).items() if k not in ("command", "config", "resume")}
    study_dir = run_study(build_study_config({**values, **flags}))
    verdicts = [v for v in load_study(study_dir).verdicts if v.outcome != "not tested"]
    print(verdict_table_markdown(verdicts))
    print(f"report: {study_dir / 'report.html'}")  # the one line a script may read
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .rescoring import evaluate_saved_model
    from .runs import write_json

    data_fields = {f.name for f in dataclasses.fields(DataConfig)}
    given = {k: v for k, v in vars(args).items() if k in data_fields}
    # No data flags: a run's model is scored on that run's own split (rescoring decides).
    data = build_config(given).data if given else None
    if args.json and Path(args.json).exists():  # refuse before spending time evaluating
        raise CnnvitError(f"{args.json} already exists: choose another --json file")
    if args.batch_size < 1:
        raise CnnvitError(f"--batch-size must be at least 1, not {args.batch_size}")
    result = evaluate_saved_model(
        args.model_dir, data, batch_size=args.batch_size, device=args.device,
        precision=args.precision,
    )  # fmt: skip
    test = result["test"]
    print(
        f"{result['model']} on {result['dataset']} test split "
        f"({sum(c['support'] for c in test['per_class'])} images):"
    )
    print(f"  accuracy {test['accuracy']:.4f}  top-5 {test['top5_accuracy']:.4f}  "
          f"macro F1 {test['macro_f1']:.4f}  loss {test['loss']:.4f}")  # fmt: skip
    if args.json:
        try:
            write_json(Path(args.json), result)
        except OSError as err:
            raise CnnvitError(f"cannot write {args.json}: {err.strerror}") from None
        print(f"  metrics written to {args.json}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `cnnvit` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    _quiet_libraries()
    handlers = {"compare": _cmd_compare, "models": _cmd_models, "report": _cmd_report,
                "evaluate": _cmd_evaluate, "demo": _cmd_demo, "study": _cmd_study,
                "analyze": _cmd_analyze}  # fmt: skip
    try:
        return handlers[args.command](args)
    except CnnvitError as err:
        print(f"cnnvit: error: {err}", file=sys.stderr)
        if args.command == "compare" and args.json:  # a script reading stdout still gets JSON
            import json

            print(json.dumps({"status": "error", "error": str(err)}))
        return 1
    except KeyboardInterrupt:
        print("cnnvit: interrupted", file=sys.stderr)
        return 130
    except (MemoryError, RuntimeError) as err:
        # torch.OutOfMemoryError (CUDA) and the CPU/MPS allocators' failures are RuntimeErrors.
        if not isinstance(err, MemoryError) and "out of memory" not in str(err).lower():
            raise
        hint = "lower --batch-size, --eval-batch-size, --image-size or --max-train-samples"
        print(f"cnnvit: error: out of memory: {hint}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
