"""The command line speaks both dialects users arrive with: timm's kebab-case flags and the
Hugging Face examples' underscore flags, each option listed once in --help, typos answered with
the valid choices, config files with the same names, and `--version`."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

import cnnvit
from cnnvit.cli import build_parser, config_from_args, main
from cnnvit.config import stage_fields
from cnnvit.errors import CnnvitError
from cnnvit.runtime import ATTENTIONS, DEVICES, PRECISIONS, resolve_precision


def compare_config(*argv: str) -> cnnvit.config.CompareConfig:
    return config_from_args(build_parser().parse_args(["compare", *argv]))


@pytest.mark.parametrize(
    ("argv", "where", "expected"),
    [
        (["--learning_rate", "1e-3"], ("train", "lr"), 1e-3),
        (["--learning-rate", "2e-4"], ("train", "lr"), 2e-4),
        (["--lr", "3e-4"], ("train", "lr"), 3e-4),
        (["--max_train_samples", "200"], ("data", "max_train_samples"), 200),
        (["--max-train-samples", "201"], ("data", "max_train_samples"), 201),
        (["--per_device_train_batch_size", "32"], ("train", "batch_size"), 32),
        (["--per-device-train-batch-size", "16"], ("train", "batch_size"), 16),
        (["--batch-size", "8"], ("train", "batch_size"), 8),
        (["--per_device_eval_batch_size", "100"], ("train", "eval_batch_size"), 100),
        (["--num_train_epochs", "3"], ("train", "epochs"), 3),
        (["--num-train-epochs", "4"], ("train", "epochs"), 4),
        (["--epochs", "5"], ("train", "epochs"), 5),
        (["--output_dir", "runs/x"], ("", "output"), "runs/x"),
        (["--output-dir", "runs/y"], ("", "output"), "runs/y"),
        (["--output", "runs/z"], ("", "output"), "runs/z"),
        (["--seed", "7"], ("train", "seed"), 7),
        (["--dataset_name", "mnist"], ("data", "dataset"), "mnist"),
        (["--image_size", "16"], ("models", "image_size"), 16),
        (["--warmup_ratio", "0.05"], ("train", "warmup_fraction"), 0.05),
        (["--max_grad_norm", "0.5"], ("train", "grad_clip_norm"), 0.5),
        (["--no-augment"], ("train", "augment"), False),
    ],
)
def test_hf_and_timm_spellings_set_the_same_option(argv: list[str], where: tuple, expected):
    config = compare_config(*argv)
    stage, name = where
    value = getattr(getattr(config, stage) if stage else config, name)
    assert value == expected


def test_every_option_has_both_spellings_and_is_listed_once(capsys: pytest.CaptureFixture):
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    help_text = capsys.readouterr().out
    flags = re.findall(r"--[a-z][a-z0-9_-]*", help_text)
    for name in stage_fields():
        kebab, under = "--" + name.replace("_", "-"), "--" + name
        for flag in (kebab, under):
            assert flag in flags, flag
    # Each spelling is written once in the option list (the usage line gives the main name).
    options = help_text.split("options:", 1)[1]
    entries = re.findall(r"^  (--\S.*?)(?:  |$)", options, flags=re.M)
    spellings = [s.split()[0] for entry in entries for s in entry.split(", ")]
    assert len(spellings) == len(set(spellings))
    assert any(e.startswith("--lr, --learning-rate, --learning_rate LR") for e in entries)
    assert any(e.startswith("--output-dir, --output_dir, --output OUTPUT_DIR") for e in entries)


@pytest.mark.parametrize(
    ("flag", "valid"), [("--device", DEVICES), ("--precision", PRECISIONS),
                        ("--attention", ATTENTIONS)],
)  # fmt: skip
def test_a_typo_in_an_enumerated_option_lists_the_choices(
    flag: str, valid: tuple[str, ...], capsys: pytest.CaptureFixture
):
    with pytest.raises(SystemExit) as exited:
        main(["compare", flag, "nonsense"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'nonsense'" in err
    for choice in valid:
        assert f"'{choice}'" in err
    assert compare_config(flag, valid[-1]).train.__getattribute__(flag[2:]) == valid[-1]


def test_precision_offers_fp16_and_a_cpu_refuses_it_in_one_line():
    assert set(PRECISIONS) == {"auto", "fp32", "bf16", "fp16"}
    assert compare_config("--precision", "fp16").train.precision == "fp16"
    import torch

    with pytest.raises(CnnvitError) as refused:
        resolve_precision("fp16", torch.device("cpu"))
    assert "needs a GPU" in str(refused.value) and "\n" not in str(refused.value)


def test_fp16_on_a_cpu_ends_the_command_with_one_line(
    capsys: pytest.CaptureFixture, tmp_path: Path
):
    code = main(["compare", "--device", "cpu", "--precision", "fp16", "--epochs", "1",
                 "--cnn", "convnext-nano", "--vit", "vit-nano", "--image-size", "16",
                 "--max-train-samples", "40", "--output-dir", str(tmp_path / "run")])  # fmt: skip
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("cnnvit: error:")]
    assert code == 1 and len(lines) == 1 and "fp16 needs a GPU" in lines[0], err
    assert "Traceback" not in err


def test_compare_json_prints_json_on_failure_too(capsys: pytest.CaptureFixture, tmp_path: Path):
    import json

    code = main(["compare", "--json", "--dataset", str(tmp_path / "missing"),
                 "--output-dir", str(tmp_path / "run")])  # fmt: skip
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert code == 1 and summary["status"] == "error" and "not found" in summary["error"]
    assert summary["error"] in captured.err  # the same one line on stderr


def test_version_names_cnnvit_torch_and_transformers(capsys: pytest.CaptureFixture):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"cnnvit {cnnvit.__version__} ")
    assert f"torch {version('torch')}" in out
    assert f"transformers {version('transformers')}" in out


def test_the_command_in_a_fresh_interpreter_answers_and_fails_in_one_line() -> None:
    """The one real subprocess of the command line (every other CLI test calls main() in this
    process): its exit status and streams, as a shell sees them. Both cases end before the
    training stack is imported, so this costs well under a second."""
    command = [sys.executable, "-c", "import sys; from cnnvit.cli import main; sys.exit(main())"]
    done = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith(f"cnnvit {cnnvit.__version__} ")
    assert f"torch {version('torch')}" in done.stdout
    done = subprocess.run([*command, "compare", "--precision", "fp8"], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 2 and done.stdout == "" and "Traceback" not in done.stderr
    assert last.startswith("cnnvit compare: error: argument --precision") and "'fp32'" in last


def test_config_file_accepts_the_same_spellings(tmp_path: Path):
    path = tmp_path / "study.yaml"
    # YAML 1.1 reads 5e-4 (no dot) as a string; HF-style and kebab keys, flat and grouped.
    path.write_text(
        "learning_rate: 5e-4\nmax-train-samples: 300\n"
        "train:\n  num_train_epochs: 2\n  per_device_train_batch_size: 16\n"
        "output_dir: runs/from-file\n"
    )
    config = compare_config("--config", str(path), "--per_device_train_batch_size", "8")
    assert config.train.lr == pytest.approx(5e-4)
    assert config.data.max_train_samples == 300
    assert config.train.epochs == 2
    assert config.train.batch_size == 8  # flags win over the file
    assert config.output == "runs/from-file"


def test_study_help_shows_the_studys_own_defaults(capsys: pytest.CaptureFixture):
    with pytest.raises(SystemExit):
        main(["study", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps the help
    lr_help = text.split("--lr, --learning-rate", 1)[1].split("--weight-decay", 1)[0]
    assert "(default: auto)" in lr_help
    epochs_help = text.split("--epochs, --num-train-epochs", 1)[1].split("--batch-size", 1)[0]
    assert "(default: 6)" in epochs_help


def test_lr_takes_auto_usual_or_a_number_from_flags_and_files(tmp_path: Path):
    assert compare_config("--lr", "usual").train.lr == "usual"
    path = tmp_path / "usual.yaml"
    path.write_text("learning_rate: usual\n")
    assert compare_config("--config", str(path)).train.lr == "usual"
    with pytest.raises(CnnvitError, match="'lr' must be auto, usual or a number .*, not 'often'"):
        compare_config("--lr", "often")
    with pytest.raises(CnnvitError, match="--lr must be auto, usual or positive"):
        compare_config("--lr", "-1")


def test_lr_takes_one_rate_per_family(tmp_path: Path):
    """`--lr vit=5e-4,cnn=2e-3` is kept in one spelling, and each family trains at its own."""
    from cnnvit.config import family_lr
    from cnnvit.models.presets import CNN_RECIPE
    from cnnvit.training.recipe import resolve_recipe
    from cnnvit.training.tuning import untuned

    config = compare_config("--lr", "vit=5e-4, cnn=2e-3")
    assert config.train.lr == "cnn=0.002,vit=0.0005"
    assert (family_lr(config.train.lr, "cnn"), family_lr(config.train.lr, "vit")) == (2e-3, 5e-4)
    recipe = resolve_recipe(config.train, CNN_RECIPE, 100)
    result = untuned(family_lr(config.train.lr, "vit"), recipe, config.train.lr)
    assert (result.chosen_lr, result.method) == (5e-4, "fixed")
    assert "cnn=0.002,vit=0.0005" in result.reason
    for bad in ("cnn=2e-3", "cnn=2e-3,vit=0", "cnn=1,cnn=2", "cnn=1,vit=2,cnn=3", "gpu=1,vit=2"):
        with pytest.raises(CnnvitError, match="give one positive rate per family"):
            compare_config("--lr", bad)


def test_a_config_file_naming_one_setting_twice_is_refused(tmp_path: Path):
    path = tmp_path / "twice.yaml"
    cases = [("lr: 1e-3\nlearning_rate: 5e-4\n", "lr", "learning_rate"),
             ("learning-rate: 1e-3\nlr: 5e-4\n", "learning_rate", "lr")]  # fmt: skip
    for text, first, second in cases:
        path.write_text(text)
        with pytest.raises(CnnvitError, match=f"'{first}' and '{second}' name the same setting"):
            compare_config("--config", str(path))


def test_run_config_round_trips_through_a_file(tmp_path: Path):
    import json

    config = compare_config("--learning_rate", "1e-3", "--num_train_epochs", "2")
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config.to_dict()))
    assert compare_config("--config", str(path)) == config
    assert dataclasses.asdict(config)["train"]["lr"] == 1e-3


def test_evaluate_takes_precision_and_batch_size():
    args = build_parser().parse_args(
        ["evaluate", "runs/r/vit", "--precision", "bf16", "--per_device_eval_batch_size", "64"]
    )
    assert (args.precision, args.batch_size) == ("bf16", 64)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["evaluate", "runs/r/vit", "--precision", "fp8"])


def test_evaluate_runs_a_saved_model_at_the_asked_precision(tmp_path: Path, capsys):
    import json

    from cnnvit.models.build import build_model

    built = build_model("vit-nano", "vit", [str(i) for i in range(10)], 16)
    built.model.save_pretrained(tmp_path / "vit")
    built.processor.save_pretrained(tmp_path / "vit")
    out = tmp_path / "metrics.json"
    code = main(["evaluate", str(tmp_path / "vit"), "--dataset", "digits",
                 "--max_eval_samples", "50", "--precision", "fp32", "--batch-size", "7",
                 "--json", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    result = json.loads(out.read_text())
    assert result["precision"] == "fp32"
    assert sum(row["support"] for row in result["test"]["per_class"]) == 50
