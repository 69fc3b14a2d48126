"""`--report-to`: the TensorBoard events a run writes hold exactly the run's per-epoch history."""

from __future__ import annotations

import pytest
import torch
from hands_on import hands_on_run

from cnnvit.config import build_config
from cnnvit.errors import CnnvitError
from cnnvit.runs import load_run

pytest.importorskip("tensorboard", reason="needs tensorboard (pip install -e .[dev])")

LOGGED = (
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "lr",
    "seconds",
    "regularised",
    "regularisation",
    "overfitting",
)


def test_tensorboard_events_match_run_history(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The shared run was made with --report-to tensorboard (tests/hands_on.py)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = hands_on_run(tmp_path_factory).path
    run = load_run(run_dir)
    assert run.config.train.report_to == "tensorboard"  # recorded, so the run reloads as it ran
    events = EventAccumulator(str(run_dir / "tracking" / "cnnvit"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for family in ("cnn", "vit"):
        history = run.models[family].history
        assert [row["epoch"] for row in history] == [1, 2]
        for key in LOGGED:
            assert f"{family}/{key}" in tags
            logged = events.Scalars(f"{family}/{key}")
            assert [event.step for event in logged] == [row["epoch"] for row in history]
            # TensorBoard stores float32: equal to run.json's float64 up to that rounding.
            for event, row in zip(logged, history, strict=True):
                assert event.value == pytest.approx(float(row[key]), rel=1e-6, abs=1e-12)
    # The learning rate follows the schedule (warm-up then cosine), so epochs differ.
    lrs = [e.value for e in events.Scalars("cnn/lr")]
    assert lrs[0] != lrs[1]


def test_no_tracker_by_default_and_unknown_tracker_refused() -> None:
    assert build_config({}).train.report_to == "none"
    with pytest.raises(CnnvitError, match="--report-to must be one of"):
        build_config({"report_to": "mlflow"})


def test_cli_flag_parses() -> None:
    from cnnvit.cli import build_parser, config_from_args

    args = build_parser().parse_args(["compare", "--report-to", "tensorboard"])
    assert config_from_args(args).train.report_to == "tensorboard"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["compare", "--report-to", "mlflow"])


def test_only_prefixed_training_reaches_the_tracker(tmp_path) -> None:
    """The run's two models log under cnn/ and vit/; a train_model call without a prefix (a
    learning-rate tuning trial) logs nothing, so trials never mix with the run's curves."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from cnnvit.config import TrainConfig
    from cnnvit.models import build_model
    from cnnvit.runtime import make_accelerator, place_model, resolve_runtime
    from cnnvit.training import Hooks, train_model
    from cnnvit.training.recipe import resolve_recipe
    from cnnvit.training.trackers import start_trackers, tracker_options

    runtime = resolve_runtime("cpu", "fp32", "eager")
    accelerator = make_accelerator(runtime, **tracker_options("tensorboard", tmp_path))
    start_trackers(accelerator, build_config({}), tmp_path)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (16, 3, 16, 16), dtype=torch.uint8, generator=generator)
    labels = torch.arange(16) % 2
    config = TrainConfig(epochs=1, batch_size=8, lr=1e-3, weight_decay=0.0, warmup_fraction=0.0,
                         label_smoothing=0.0, augment_strength=0.0)  # fmt: skip
    for prefix in (None, "cnn"):
        built = build_model("convnext-nano", "cnn", ["a", "b"], 16, "eager", seed=0)
        model, preprocess = place_model(built, runtime)
        data = (images, labels)
        recipe = resolve_recipe(config, built.recipe, len(labels))
        train_model(model, preprocess, data, data, recipe, accelerator, runtime,
                    Hooks(name="trial", log=lambda line: None, tracker_prefix=prefix))  # fmt: skip
    accelerator.end_training()
    events = EventAccumulator(str(tmp_path / "tracking" / "cnnvit"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert tags == {f"cnn/{key}" for key in LOGGED}


@pytest.mark.parametrize("tracker", ["wandb", "trackio"])
def test_a_tracker_that_is_not_installed_is_one_line(tracker, tmp_path) -> None:
    from importlib.util import find_spec

    from cnnvit.training.trackers import tracker_options

    if find_spec(tracker) is not None:
        assert tracker_options(tracker, tmp_path)["log_with"] == tracker
        return
    with pytest.raises(CnnvitError, match=f"--report-to {tracker} needs the {tracker} package"):
        tracker_options(tracker, tmp_path)
    assert tracker_options("none", tmp_path) == {}
