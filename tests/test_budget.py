"""Training budgets and the convergence rule: a FLOP budget stops each model within one step of
its allowance, a time budget stops at its deadline, bad budgets are one line, and the
convergence rule tells a still-improving curve from a flat one."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from conftest import MINI, STUDY

from cnnvit import pipeline
from cnnvit.budgets import Budget, parse_budget, resolve_auto
from cnnvit.cli import main
from cnnvit.config import TrainConfig, build_config
from cnnvit.data.preprocess import BatchPreprocessor
from cnnvit.errors import CnnvitError
from cnnvit.evidence import CellRecord, Verdict, explain, judge_claims
from cnnvit.evidence.cells import compute_curve, model_repeats
from cnnvit.models.build import build_model, count_flops, preset_processor
from cnnvit.models.presets import CNN_RECIPE, VIT_RECIPE
from cnnvit.report.study_facts import load_study
from cnnvit.report.study_figures import flop_crossing
from cnnvit.runs import RunWriter, load_run
from cnnvit.runtime import Runtime, make_accelerator
from cnnvit.study import study
from cnnvit.study.grid import build_study_config, expand_grid
from cnnvit.training import Hooks, train_model
from cnnvit.training.budget import flop_steps, images_in_steps, planned_steps, spent
from cnnvit.training.convergence import (
    converged,
    convergence_record,
    more_epochs,
    plateau_epoch,
    standard_error,
    window,
)
from cnnvit.training.recipe import resolve_recipe

CPU = torch.device("cpu")
RUNTIME = Runtime(CPU, "fp32", "eager")
CLASSES = ["a", "b", "c", "d"]


def _data(count: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (count, 3, 16, 16), generator=generator, dtype=torch.uint8)
    return images, torch.arange(count) % 4


def _train(name: str, family: str, budget: Budget, config: TrainConfig, n: int = 40) -> dict:
    """Train one nano preset under `budget`; what it spent and the steps it was planned."""
    built = build_model(name, family, CLASSES, 16)
    data = _data(n)
    flops = count_flops(built.model, 16)
    steps = planned_steps(budget, flops, n, config.batch_size, lambda: 20.0)
    row = CNN_RECIPE if family == "cnn" else VIT_RECIPE
    recipe = resolve_recipe(config, row, n, 16, steps, budget.text)
    if budget.mode == "time":
        recipe = dataclasses.replace(recipe, deadline_seconds=float(budget.value or 0))
    result = train_model(built.model, BatchPreprocessor(preset_processor(16), CPU), data,
                         _data(8), recipe, make_accelerator(RUNTIME), RUNTIME,
                         Hooks(log=lambda _: None))  # fmt: skip
    step_flops = 3 * flops * config.batch_size
    return {**spent(budget, result.history, flops, n), "step_flops": step_flops, "plan": steps,
            "last_lr": result.history[-1]["lr"]}  # fmt: skip


@pytest.mark.parametrize(
    "text", ["flops", "flops:", "flops:-1", "flops:1e", "time:abc", "steps:3", "epochs:2.5"]
)
def test_a_malformed_budget_is_one_line(text: str) -> None:
    with pytest.raises(CnnvitError) as caught:
        build_config({"budget": text})
    assert "--budget" in str(caught.value) and "\n" not in str(caught.value)


def test_budget_forms_and_epochs_n_is_epochs() -> None:
    assert parse_budget("flops:2e12", 5) == Budget("flops", 2e12)
    assert parse_budget("FLOPS:auto", 5) == Budget("flops", None)
    assert parse_budget("time:90", 5) == Budget("time", 90.0)
    assert parse_budget("epochs", 7) == Budget("epochs", 7.0)
    assert build_config({"budget": "epochs:3"}).train.epochs == 3
    with pytest.raises(CnnvitError, match="disagree"):
        build_config({"budget": "epochs:3", "epochs": 4})
    with pytest.raises(CnnvitError, match="probe"):
        build_config({"budget": "time:10", "adapt": "probe"})
    auto = resolve_auto(Budget("flops", None), 4, 100, {"cnn": 10, "vit": 60})
    assert auto.value == 4 * 100 * 3 * 10  # --epochs passes of the cheaper model


def test_flop_steps_spend_at_most_the_budget_and_less_than_one_step_short() -> None:
    for n, batch, flops, budget in [(100, 16, 1000, 7.3e6), (40, 64, 999, 2.5e6), (7, 3, 5, 1e3)]:
        steps = flop_steps(budget, flops, n, batch)
        used = 3 * flops * images_in_steps(steps, n, batch)
        assert used <= budget, (n, batch)
        # one more step would have overrun (a step trains at most `batch` images)
        next_step = 3 * flops * images_in_steps(steps + 1, n, batch)
        assert next_step > budget and budget - used < 3 * flops * batch


def test_a_flop_budget_stops_both_models_within_one_step_of_it() -> None:
    config = TrainConfig(batch_size=8, lr=1e-3, label_smoothing=0.0, augment_strength=0.0)
    cnn_flops = count_flops(build_model("resnet-nano", "cnn", CLASSES, 16).model, 16)
    budget = Budget("flops", 3 * cnn_flops * 40 * 2.4)  # 2.4 of the CNN's epochs of 40 images
    cnn = _train("resnet-nano", "cnn", budget, config)
    vit = _train("vit-nano", "vit", budget, config)
    for model in (cnn, vit):
        assert model["flops"] <= budget.value < model["flops"] + model["step_flops"], model
        assert model["steps"] == model["plan"]
    assert abs(cnn["flops"] - vit["flops"]) <= max(cnn["step_flops"], vit["step_flops"])
    assert cnn["epochs"] == pytest.approx(2.4, abs=8 / 40)  # the last epoch was cut short
    assert vit["epochs"] < cnn["epochs"]  # the ViT costs more per image, so sees fewer


def test_a_time_budget_trains_until_its_deadline() -> None:
    # The first estimate (20 steps/s for 0.8 s = 16 steps) is refined from the measured rate:
    # the run stops at the deadline, not at the estimate, and overruns it by at most one step.
    config = TrainConfig(batch_size=8, lr=1e-3, label_smoothing=0.0, augment_strength=0.0)
    deadline = 0.8
    model = _train("resnet-nano", "cnn", Budget("time", deadline), config, n=24)
    assert model["seconds"] >= deadline
    assert model["last_lr"] < 0.1 * config.lr  # the cosine decay ended at the deadline
    # within 10%, with a generous absolute floor: one step on a loaded machine can be slow
    assert model["seconds"] <= deadline + max(0.1 * deadline, 2.0), model


# ----------------------------------------------------------------------------- convergence


def test_the_convergence_rule_flags_a_rising_curve_and_clears_a_flat_one() -> None:
    n = 1000  # SE of 0.9 on 1,000 images is 0.0095
    rising = [0.5 + 0.03 * e for e in range(10)]  # +3 points an epoch: over 3 SE
    flat = [0.6, 0.8, 0.88, 0.9, 0.905, 0.9, 0.903, 0.899, 0.904, 0.902]
    assert window(10) == 3 and window(30) == 6
    assert not converged(rising, n) and converged(flat, n)
    assert plateau_epoch(flat, n) == 4  # after 0.9 nothing beat the best by one SE
    # a gain of just over one SE in the last k epochs is still improving
    bump = [*flat[:7], 0.905 + 1.2 * standard_error(0.905, n), 0.9, 0.9]
    assert not converged(bump, n)
    assert not converged([0.5, 0.6, 0.6], n)  # k = 3 epochs or fewer: cannot be judged
    record = convergence_record([{"val_accuracy": v} for v in flat], n)
    assert record["converged"] and record["plateau_epoch"] == 4 and record["window"] == 3
    assert record["more_epochs"] is None and "standard error" in record["rule"]


def test_until_converged_cools_down_a_plateaued_model_and_lets_an_improving_one_run() -> None:
    """--until-converged: a flat validation curve starts the cool-down (a fifth of the epochs
    done, within the cap); a still-improving one trains on at the peak rate until the cap is a
    cool-down away; the plan is the peak rate, then a linear fall to zero at the stop step."""
    from cnnvit.training.loop import LoopState, Plan, _stop_step

    recipe = resolve_recipe(TrainConfig(epochs=40, until_converged=True), VIT_RECIPE, 640)
    steps, n_val = 10, 1000  # steps per epoch; SE of 0.9 on 1,000 images is 0.0095

    def state_after(curve: list[float]) -> tuple[LoopState, Plan, int]:
        state = LoopState(torch.Generator(), torch.Generator())
        state.history = [{"val_accuracy": v, "steps": steps} for v in curve]
        plan = Plan(40 * steps, recipe.warmup_fraction, stable=True)
        return state, plan, _stop_step(state, plan, recipe, steps, 1, n_val, 40 * steps)

    flat = [0.6, 0.8, 0.88, 0.9, 0.905, 0.9, 0.903, 0.899, 0.904, 0.902]
    state, plan, stop = state_after(flat)
    assert (state.cool_down_from, stop) == (10, 10 * steps + 2 * steps)  # 20% of 10 epochs
    assert plan(5 * steps) == 1.0 and plan(10 * steps) == 1.0  # the peak rate until then
    assert plan(11 * steps) == pytest.approx(0.5) and plan(12 * steps) == 0.0
    assert _stop_step(state, plan, recipe, steps, 1, n_val, 40 * steps) == stop  # it holds
    rising = [0.3 + 0.02 * e for e in range(20)]  # +2 points an epoch: still improving
    state, plan, stop = state_after(rising)
    assert (state.cool_down_from, stop, plan.decay_start) == (0, 40 * steps, -1)
    state, plan, stop = state_after([0.3 + 0.01 * e for e in range(34)])  # 34 + 7 > 40
    assert (state.cool_down_from, stop) == (34, 40 * steps)  # the cap: 6 epochs left
    warm = round(40 * steps * recipe.warmup_fraction)
    assert Plan(40 * steps, recipe.warmup_fraction, stable=True)(warm // 2) < 1.0


def test_an_until_converged_run_stops_after_its_cool_down_and_records_it() -> None:
    """A real run on random labels plateaus at once: it stops well before the cap, its last
    epoch trains at a rate near zero, and its convergence record is judged before the cool-down."""
    config = TrainConfig(epochs=30, batch_size=8, lr=1e-3, label_smoothing=0.0,
                         augment_strength=0.0, until_converged=True)  # fmt: skip
    built = build_model("resnet-nano", "cnn", CLASSES, 16)
    recipe = resolve_recipe(config, CNN_RECIPE, 40, 16)
    result = train_model(built.model, BatchPreprocessor(preset_processor(16), CPU), _data(40),
                         _data(100), recipe, make_accelerator(RUNTIME), RUNTIME,
                         Hooks(log=lambda _: None))  # fmt: skip
    epochs = len(result.history)
    assert 0 < result.cool_down_from < epochs < 30
    assert epochs - result.cool_down_from == max(1, math.ceil(0.2 * result.cool_down_from))
    peak = [row["lr"] for row in result.history[1 : result.cool_down_from]]
    assert peak and all(lr == pytest.approx(config.lr) for lr in peak)
    assert result.history[-1]["lr"] < 0.05 * config.lr
    record = convergence_record(result.history, 100, result.cool_down_from)
    assert record["converged"] and record["epochs"] == result.cool_down_from
    assert record["cool_down_epochs"] == epochs - result.cool_down_from


def test_an_until_converged_budget_is_named_by_the_epochs_the_models_took() -> None:
    from cnnvit.evidence.budgets import budget_text

    def cell(epochs: int, took: dict[str, tuple[int, int]]) -> CellRecord:
        records = {f: {"converged": True, "epochs": a, "cool_down_from": a, "cool_down_epochs": b}
                   for f, (a, b) in took.items()}  # fmt: skip
        return CellRecord(pair="p", fraction=1.0, n_train=10, seed=0, pretrained=False,
                          metrics={}, epochs=epochs, convergence=records)  # fmt: skip

    cells = [cell(60, {"cnn": (5, 1), "vit": (20, 4)}), cell(100, {"cnn": (9, 2), "vit": (30, 6)})]
    assert budget_text(cells) == "convergence (6 to 36 epochs per model, cap 60/100)"
    assert budget_text([CellRecord(pair="p", fraction=1.0, n_train=10, seed=0, pretrained=False,
                                   metrics={}, epochs=6)]) == "6 epochs per model"  # fmt: skip


def test_until_converged_needs_an_epoch_budget_and_a_study_raises_its_cap() -> None:
    with pytest.raises(CnnvitError, match="--until-converged .* does not combine"):
        build_config({"until_converged": True, "budget": "flops:1e12"})
    study_config = build_study_config({**STUDY, "until_converged": True})
    assert study_config.compare.train.epochs == STUDY["epochs"]  # given: kept
    plain = {k: v for k, v in STUDY.items() if k != "epochs"}
    assert build_study_config({**plain, "until_converged": True}).compare.train.epochs == 60
    assert build_study_config(plain).compare.train.epochs == 6


def test_more_epochs_estimates_a_saturating_curve_and_declines_a_straight_line() -> None:
    n = 2000
    a, b, tau = 0.95, 0.5, 4.0
    curve = [a - b * math.exp(-t / tau) for t in range(1, 9)]
    assert not converged(curve, n)
    extra = more_epochs(curve, n, window(8))
    # by the curve itself: the first E for which epochs E-k+1..E gain under one SE
    k = window(8)
    truth = next(
        e for e in range(9, 200)
        if a - b * math.exp(-e / tau) - (a - b * math.exp(-(e - k) / tau))
        <= standard_error(a, n)
    )  # fmt: skip
    assert extra is not None and abs(8 + extra - truth) <= 1.5
    assert more_epochs([0.1 + 0.01 * t for t in range(10)], n, 3) is None  # no curvature
    assert more_epochs([0.5, 0.4, 0.45], n, 3) is None  # too few points


# ------------------------------------------------------------------- verdicts at a budget


def _cell(mode: str, converged: dict[str, bool], more: float | None = None) -> CellRecord:
    record = {f: {"converged": c, "epochs": 4, "more_epochs": None if c else more}
              for f, c in converged.items()}  # fmt: skip
    metrics = {"accuracy": 0.9, "train_seconds": 10.0, "params": 1000.0}
    return CellRecord(
        pair="p", fraction=1.0, n_train=500, seed=0, pretrained=False,
        metrics={"cnn": metrics, "vit": {**metrics, "accuracy": 0.7}},
        paired={"only_cnn": 120, "only_vit": 20, "both": 300, "neither": 60},
        budget_mode=mode, budget=f"equal {mode} (x per model)" if mode != "epochs" else "",
        epochs=4, convergence=record,
    )  # fmt: skip


def _verdict(cells: list[CellRecord], claim_id: str) -> Verdict:
    return next(v for v in judge_claims(cells) if v.claim_id == claim_id)


def test_an_accuracy_verdict_says_its_budget_and_who_had_not_converged() -> None:
    both = _verdict([_cell("epochs", {"cnn": True, "vit": True})], "data_efficiency")
    assert both.budget_note.startswith("This holds at 4 epochs per model")
    assert both.budget_note in explain(both)
    behind = _verdict([_cell("flops", {"cnn": True, "vit": False}, more=6.0)], "data_efficiency")
    assert behind.budget_note.startswith("At this budget only (equal flops")
    assert "ViT had not converged in 1 of 1 run" in behind.budget_note
    assert "about 6 more epochs" in behind.budget_note and "2.5x this budget" in behind.budget_note
    assert "CNN had not" not in behind.budget_note
    unknown = _verdict([_cell("epochs", {"cnn": False, "vit": True})], "data_efficiency")
    assert "cannot be estimated" in unknown.budget_note
    assert (
        _verdict([_cell("epochs", {"cnn": False, "vit": True})], "cheaper_flops").budget_note == ""
    )


def test_a_time_budget_leaves_the_training_time_claim_not_tested() -> None:
    timed = _verdict([_cell("time", {"cnn": True, "vit": True})], "cheaper_training_time")
    assert timed.outcome == "not tested" and "by construction" in timed.reason
    epochs = _verdict([_cell("epochs", {"cnn": True, "vit": True})], "cheaper_training_time")
    assert "by construction" not in epochs.reason


@pytest.mark.slow  # a resume test
def test_a_flop_budget_run_interrupted_resumes_to_the_same_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = {**MINI, "dataset": "digits", "budget": "flops:auto", "epochs": 3}
    reference = load_run(pipeline.compare(output=str(tmp_path / "ref"), **settings))
    real = RunWriter.epoch_done

    def interrupt_after_two(self: RunWriter, family: str, row: dict) -> None:
        real(self, family, row)
        if family == "cnn" and len(self.model(family)["history"]) == 2:
            raise KeyboardInterrupt  # as Ctrl-C between epochs

    monkeypatch.setattr(RunWriter, "epoch_done", interrupt_after_two)
    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        pipeline.compare(output=str(cut), **settings)
    monkeypatch.setattr(RunWriter, "epoch_done", real)
    assert load_run(cut).status == "interrupted"
    assert (cut / ".checkpoints" / "cnn").is_dir()  # resumed from its second epoch, not redone
    resumed = load_run(pipeline.compare(resume=cut))
    assert resumed.raw["budget"] == reference.raw["budget"]
    for family in ("cnn", "vit"):
        a, b = reference.models[family].results, resumed.models[family].results
        drop = ("seconds",)
        assert [{k: v for k, v in r.items() if k not in drop} for r in b["history"]] == [
            {k: v for k, v in r.items() if k not in drop} for r in a["history"]
        ]
        assert {k: v for k, v in b["budget"].items() if k != "seconds"} == {
            k: v for k, v in a["budget"].items() if k != "seconds"
        }
        assert b["budget"]["flops"] <= reference.raw["budget"]["value"]


def test_the_command_line_takes_budgets_and_refuses_a_bad_one_in_one_line(
    capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    code = main(["compare", "--budget", "flops:lots", "--output-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("cnnvit: error:")]
    assert code == 1 and len(lines) == 1 and "--budget" in lines[0] and "Traceback" not in err
    assert not (tmp_path / "run").exists()
    with pytest.raises(SystemExit):
        main(["study", "--help"])  # the study's --budget takes compare's budgets too
    assert "flops:X" in capsys.readouterr().out


def test_a_study_passes_a_flop_or_time_budget_to_every_cell() -> None:
    flops = build_study_config({"budget": "flops:2e9", "fractions": "0.5,1", "epochs": 4})
    assert flops.budget == "flops:2e9" and flops.compare.train.budget == "flops:2e9"
    assert {c.epochs for c in expand_grid(flops, 1000)} == {4}  # the budget sets the steps
    fixed = build_study_config({"budget": "epochs:5"})
    assert fixed.budget == "epochs" and fixed.compare.train.epochs == 5
    assert build_study_config({"budget": "time:30"}).compare.train.budget == "time:30"
    for bad in ("steps:3", "flops:-2", "epochs:x"):
        with pytest.raises(CnnvitError, match="--budget"):
            build_study_config({"budget": bad})


def test_the_compute_curve_and_where_two_families_cross_in_flops() -> None:
    results = {"flops_per_image": 10, "history": [
        {"val_accuracy": 0.5, "images": 100}, {"val_accuracy": 0.7, "images": 40}]}  # fmt: skip
    assert compute_curve(results, 100) == [(3000.0, 0.5), (4200.0, 0.7)]
    # the ViT starts lower and ends higher: 30 -> 90 against the CNN's 50 -> 70 -> 80, linear
    # in log FLOPs: -10 points at 1e6, +10 at 1e8, so they cross halfway, at 1e7
    cnn = [(1e4, 50.0), (1e6, 70.0), (1e8, 80.0)]
    assert flop_crossing({"cnn": cnn, "vit": [(1e4, 30.0), (1e8, 90.0)]}) == pytest.approx(1e7)
    flat = [(1e4, 60.0), (1e8, 60.0)]
    assert flop_crossing({"cnn": flat, "vit": [(1e4, 40.0), (1e8, 80.0)]}) == pytest.approx(1e6)
    assert flop_crossing({"cnn": cnn, "vit": [(x, a - 30) for x, a in cnn]}) is None
    assert flop_crossing({"cnn": cnn, "vit": [(1e9, 99.0), (1e10, 99.0)]}) is None  # no overlap


def test_a_cut_last_epoch_is_not_a_timing_repeat_and_flop_budgets_leave_time_to_totals() -> None:
    rows = [{"seconds": 1.0, "images": 100}] * 7 + [{"seconds": 0.1, "images": 10}]
    epochs = model_repeats({"history": rows, "budget": {"mode": "epochs"}})
    assert epochs["train_seconds"] == [1.0] * 6  # the first epoch (warm-up) and the cut one out
    flops = model_repeats({"history": rows, "budget": {"mode": "flops"}})
    assert "train_seconds" not in flops and flops["train_images_per_second"] == [1.0] * 6


@pytest.mark.slow  # a study test
def test_a_flop_budget_study_trains_every_model_to_it_and_draws_accuracy_against_flops(
    tmp_path: Path,
) -> None:
    budget = 2e9
    root = tmp_path / "flops"
    study(output=str(root), **{**STUDY, "seeds": [0], "budget": f"flops:{budget:g}"})
    cells = load_study(root).records
    assert len(cells) == 2 and all(c.budget_mode == "flops" for c in cells)
    for cell in cells:
        for family in ("cnn", "vit"):
            spent_flops = cell.metrics[family]["train_flops"]
            step = 3 * cell.metrics[family]["flops_per_image"] * STUDY["batch_size"]
            assert spent_flops <= budget < spent_flops + step, (cell.n_train, family)
            assert cell.compute[family][-1][0] == pytest.approx(spent_flops)
    report = (root / "report.md").read_text()
    assert "## Accuracy against training compute" in report
    assert (root / "figures" / "compute.png").is_file()
    assert "equal training FLOPs (2e+09 per model)" in report
