"""`cnnvit study`: the grid, resuming without training twice, interrupted cells, the report.

One real study of 2 seeds x 2 nested fractions (nano pair, 16 px, a hundred digits, 1-2 epochs)
is built in steps that exercise the runner: interrupted after two cells, a half-finished cell
left behind, resumed (only the missing cells train, counted), resumed again (nothing trains).
The grid's arithmetic is checked by hand, and the study report against the engine and against
the one-run report of the same cell.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import STUDY

from cnnvit import pipeline
from cnnvit.cli import main
from cnnvit.errors import CnnvitError
from cnnvit.evidence import CLAIMS, cell_from_run, judge_claims, verdict_sentence
from cnnvit.report.study_facts import load_study
from cnnvit.runs import load_run
from cnnvit.study import build_study_config, expand_grid, study
from cnnvit.study.grid import cell_epochs, parse_fractions, train_size

pytestmark = pytest.mark.slow  # `make test-fast` leaves these out

SMALL = {**STUDY, "seeds": [0, 1]}
IDS = ["nano-f50-s0", "nano-f50-s1", "nano-f100-s0", "nano-f100-s1"]


class Counter:
    """Wraps the real `compare`, counting calls; raises Ctrl-C at call `interrupt_at`."""

    def __init__(self, interrupt_at: int | None = None) -> None:
        self.calls: list[str] = []
        self.interrupt_at = interrupt_at
        self.real = pipeline.compare

    def __call__(self, *args: Any, **kwargs: Any) -> Path:
        self.calls.append(Path(kwargs["output"]).name)
        if self.interrupt_at is not None and len(self.calls) == self.interrupt_at:
            raise KeyboardInterrupt
        return self.real(*args, **kwargs)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The study, built in steps; what each step saw."""
    root = tmp_path_factory.mktemp("study") / "digits"
    seen: dict[str, Any] = {"root": root}
    with pytest.MonkeyPatch.context() as patch:
        first = Counter(interrupt_at=3)
        patch.setattr(pipeline, "compare", first)
        with pytest.raises(KeyboardInterrupt):
            study(output=str(root), **SMALL)
        seen["first_calls"] = list(first.calls)
        seen["after_interrupt"] = json.loads((root / "study.json").read_text())
        # A cell another attempt left half-finished: a run whose run.json says interrupted.
        half = root / "cells" / IDS[2]
        shutil.copytree(root / "cells" / IDS[0], half)
        record = json.loads((half / "run.json").read_text())
        record["status"] = "interrupted"
        (half / "run.json").write_text(json.dumps(record))
        second = Counter()
        patch.setattr(pipeline, "compare", second)
        study(resume=root)
        seen["second_calls"] = list(second.calls)
        seen["verdicts"] = [verdict_sentence(v) for v in load_study(root).verdicts]
        third = Counter()
        patch.setattr(pipeline, "compare", third)
        study(output=str(root), **SMALL)  # the same command again
        seen["third_calls"] = list(third.calls)
    return seen


def test_interrupted_study_keeps_finished_cells_and_says_so(built: dict[str, Any]) -> None:
    assert built["first_calls"] == IDS[:3]  # smallest fraction first, then by seed
    record = built["after_interrupt"]
    assert record["status"] == "interrupted"
    states = {k: v["status"] for k, v in record["cells"].items()}
    assert states == {IDS[0]: "complete", IDS[1]: "complete", IDS[2]: "interrupted",
                      IDS[3]: "pending"}  # fmt: skip


def test_resume_trains_only_what_is_missing_and_moves_the_half_cell_aside(
    built: dict[str, Any],
) -> None:
    assert built["second_calls"] == IDS[2:]
    assert built["third_calls"] == []  # nothing trains twice
    root: Path = built["root"]
    aside = list((root / "cells").glob(f".incomplete-{IDS[2]}-*"))
    assert len(aside) == 1 and (aside[0] / "run.json").is_file()  # kept, not deleted
    assert json.loads((aside[0] / "run.json").read_text())["status"] == "interrupted"
    record = json.loads((root / "study.json").read_text())
    assert record["status"] == "complete"
    assert record["cells"][IDS[2]]["set_aside"] == [str(aside[0].relative_to(root))]
    assert len(record["timings"]["sessions"]) == 3
    # The same verdicts after a resume that trained nothing.
    assert [verdict_sentence(v) for v in load_study(root).verdicts] == built["verdicts"]


def test_every_cell_is_a_loadable_run_on_the_same_test_images(built: dict[str, Any]) -> None:
    root: Path = built["root"]
    test_ids = []
    for cell_id in IDS:
        run = load_run(root / "cells" / cell_id)
        assert run.status == "complete"
        fraction = 0.5 if "f50" in cell_id else 1.0
        seed = int(cell_id[-1])
        assert run.config.data.train_fraction == fraction and run.config.train.seed == seed
        assert run.dataset["splits"]["train"] == round(SMALL["max_train_samples"] * fraction)
        # Budget "steps": half the images, twice the epochs (100 images = 4 batches of 32).
        assert len(run.models["cnn"].history) == (2 if fraction == 0.5 else 1)
        test_ids.append(run.models["vit"].predictions().ids)
        assert np.array_equal(run.models["cnn"].predictions().ids, test_ids[-1])
    assert all(np.array_equal(test_ids[0], ids) for ids in test_ids)
    # Nested: the smaller training subset lies inside the larger one, for every seed.
    small = set(load_run(root / "cells" / IDS[0]).manifest["ids"]["train"])
    large = set(load_run(root / "cells" / IDS[3]).manifest["ids"]["train"])
    assert small < large
    assert load_study(root).test_ids_agree()


def test_study_report_leads_with_every_claim_and_its_engine_sentence(
    built: dict[str, Any],
) -> None:
    root: Path = built["root"]
    text = (root / "report.md").read_text()
    assert text.index("## Verdicts") < text.index("## Evidence per claim")
    table = text[text.index("## Verdicts") : text.index("## Evidence per claim")]
    for claim in CLAIMS:
        assert claim.statement in table
    cells = [cell_from_run(load_run(root / "cells" / i)) for i in IDS]
    for verdict in judge_claims(cells):  # the engine on the same cells, judged here
        if verdict.outcome != "not tested":
            assert verdict_sentence(verdict) in text
    for cell_id in IDS:  # the per-cell table, with its exact McNemar test
        assert f"| {cell_id} |" in text
    html = (root / "report.html").read_text()
    assert "data:image/png;base64," in html and "CNNs are more data-efficient" in html
    for name in ("data_efficiency", "difference", "costs"):
        assert (root / "figures" / f"{name}.png").stat().st_size > 1000


def test_one_cell_study_and_its_run_report_say_the_same(
    built: dict[str, Any], tmp_path: Path
) -> None:
    """The one-run reflection and the study report judge one cell with one engine: same words."""
    source = built["root"] / "cells" / IDS[3]
    one, settings = tmp_path / "one", {**SMALL, "seeds": [1], "fractions": [1.0]}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "compare", Counter(interrupt_at=1))
        with pytest.raises(KeyboardInterrupt):  # study.json made, nothing trained
            study(output=str(one), **settings)
        shutil.copytree(source, one / "cells" / IDS[3])
        counter = Counter()
        patch.setattr(pipeline, "compare", counter)
        study(resume=one)
    assert counter.calls == []  # the copied run counts as the finished cell
    study_text = (one / "report.md").read_text()
    from cnnvit.report import build_report  # cells skip their own report; build it here

    run_text = (build_report(source).parent / "report.md").read_text()
    verdicts = load_study(one).verdicts
    assert any(v.outcome != "not tested" for v in verdicts)
    for verdict in verdicts:
        if verdict.outcome != "not tested":
            sentence = verdict_sentence(verdict)
            assert sentence in study_text and sentence in run_text


def test_one_run_borrows_the_spread_of_an_earlier_study_of_its_pair_and_data(
    built: dict[str, Any], tmp_path: Path
) -> None:
    """A one-run power estimate uses the SD over seeds an earlier study of the same pair, data
    and image size measured; with no such study the spread is unknown."""
    from cnnvit.evidence import stats
    from cnnvit.evidence.wording import what_it_would_take
    from cnnvit.report.study_facts import earlier_spreads

    root: Path = built["root"]
    run = load_run(root / "cells" / IDS[-1])
    spreads = earlier_spreads(run, root.parent)
    study_verdicts = {v.claim_id: v for v in load_study(root).verdicts}
    assert spreads and all(p.seeds == 2 and str(root) in p.source for p in spreads.values())
    for claim_id, prior in spreads.items():
        assert prior.spread == study_verdicts[claim_id].evidence.spread
    assert earlier_spreads(run, tmp_path) == {}  # no study there
    alone = {v.claim_id: v for v in judge_claims([cell_from_run(run)])}
    lent = {v.claim_id: v for v in judge_claims([cell_from_run(run)], prior=spreads)}
    estimated = [k for k, v in lent.items() if v.seeds_needed is not None]
    assert estimated, "no one-run claim got a power estimate from the study"
    for claim_id in estimated:
        verdict, prior = lent[claim_id], spreads[claim_id]
        assert alone[claim_id].seeds_needed is None and verdict.spread == prior.spread
        want = stats.seeds_to_resolve(prior.spread, verdict.threshold, verdict.evidence.confidence)
        assert verdict.seeds_needed == want
        assert f" of the study {root}" in what_it_would_take(verdict)
        assert "is unknown" in what_it_would_take(alone[claim_id])


def test_a_study_tunes_each_family_once_per_pair_and_reuses_the_rates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """By default (--lr auto) the pair's largest-fraction, first-seed cell tunes both families'
    rates, first; every other cell trains at them untuned, and a rerun trains nothing."""
    from cnnvit.training.tuning import TuningResult

    tuned: list[float] = []

    def fake_tuner(fresh: Any, train: Any, validation: Any, recipe: Any, *args: Any,
                   **kwargs: Any) -> TuningResult:  # fmt: skip
        tuned.append(recipe.lr)  # a rate no row has, so reuse cannot be a coincidence
        return TuningResult(chosen_lr=recipe.lr * 0.75, images_used=128, method="auto",
                            reason="picked by the test")  # fmt: skip

    monkeypatch.setattr(pipeline, "tune_learning_rate", fake_tuner)
    settings = {k: v for k, v in SMALL.items() if k != "lr"}
    root = tmp_path / "tuned"
    counter = Counter()
    monkeypatch.setattr(pipeline, "compare", counter)
    study(output=str(root), **settings)
    assert counter.calls[0] == "nano-f100-s0" and sorted(counter.calls) == sorted(IDS)
    assert sorted(tuned) == [5e-4, 2e-3]  # one tuning per family, in one cell
    want = {"cnn": 2e-3 * 0.75, "vit": 5e-4 * 0.75}
    record = json.loads((root / "study.json").read_text())
    assert record["grid"]["tuning"] == {"nano": {"cell": "nano-f100-s0", **want}}
    for cell in IDS:
        run = load_run(root / "cells" / cell)
        for family, model in run.models.items():
            assert model.results["training"]["lr"] == pytest.approx(want[family])
            method = model.results["tuning"]["method"]
            assert method == ("auto" if cell == "nano-f100-s0" else "fixed"), cell
        if cell != "nano-f100-s0":
            assert run.config.train.lr == "cnn=0.0015,vit=0.000375"
    assert "(tuned in nano-f100-s0)" in (root / "report.md").read_text()
    again = Counter()
    monkeypatch.setattr(pipeline, "compare", again)
    study(output=str(root), **settings)
    assert again.calls == [] and len(tuned) == 2  # reused cells count as complete


def test_a_study_at_the_usual_rates_trains_each_family_untuned(tmp_path: Path) -> None:
    """--lr usual: cells train untuned at per-family rates, not one rate shared by both."""
    root = tmp_path / "usual"
    study(output=str(root), **{**SMALL, "lr": "usual", "seeds": [0], "fractions": [1.0]})
    run = load_run(root / "cells" / "nano-f100-s0")
    assert run.config.train.lr == "usual"
    rates = {k: m.results["training"]["lr"] for k, m in run.models.items()}
    assert rates == {"cnn": 2e-3, "vit": 5e-4}
    assert all(m.results["tuning"]["images_used"] == 0 for m in run.models.values())
    assert all(m.results["tuning"]["method"] == "usual" for m in run.models.values())


def test_report_command_rebuilds_the_study_report(
    built: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    root: Path = built["root"]
    (root / "report.md").unlink()
    assert main(["report", str(root)]) == 0
    assert (root / "report.md").is_file() and "report.html" in capsys.readouterr().out


def test_a_study_directory_with_other_settings_is_refused(built: dict[str, Any]) -> None:
    with pytest.raises(CnnvitError, match="other settings.*epochs"):
        study(output=str(built["root"]), **{**SMALL, "epochs": 3})


def test_grid_arithmetic_by_hand() -> None:
    pair = {"cnn": "convnext-micro", "vit": "vit-micro"}
    config = build_study_config(
        {"fractions": "10%,25%,1", "seeds": "2,0", "epochs": 6, "batch_size": 64, **pair}
    )
    assert config.seeds == (0, 2) and config.fractions == (0.1, 0.25, 1.0)
    cells = expand_grid(config, 1294)
    assert [c.id for c in cells[:2]] == ["micro-f10-s0", "micro-f10-s2"]
    # 1294 images at batch 64 = 21 steps per epoch, 126 steps in 6 epochs; 10% = 129 images
    # = 3 steps per epoch -> 42 epochs; 25% = 324 images = 6 steps per epoch -> 21 epochs.
    assert [(c.n_train, c.epochs) for c in cells[::2]] == [(129, 42), (324, 21), (1294, 6)]
    capped = build_study_config({"fractions": [0.1], "max_epochs": 30, "epochs": 6})
    assert cell_epochs(capped, 1294, 129) == 30
    fixed = build_study_config({"budget": "epochs", "epochs": 6})
    assert cell_epochs(fixed, 1294, 129) == 6
    assert train_size(1294, 1000, 0.25) == 250  # the cap applies before the fraction
    quick = build_study_config({"quick": True})
    assert quick.pairs == ("nano",) and quick.compare.models.image_size == 16


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"seed": 3}, "--seeds"),
        ({"train_fraction": 0.5}, "--fractions"),
        ({"fractions": "0,0.5"}, r"\(0, 1\]"),
        ({"seeds": "a,b"}, "whole numbers"),
        ({"pairs": "huge"}, "unknown pair"),
        ({"pairs": "nano", "cnn": "resnet-nano"}, "either --pairs or --cnn"),
        ({"budget": "time"}, "--budget"),
    ],
)
def test_bad_study_settings_are_one_line_errors(values: dict[str, Any], message: str) -> None:
    with pytest.raises(CnnvitError, match=message):
        build_study_config(values)
    assert parse_fractions("25%, 0.5") == (0.25, 0.5)


def test_a_new_study_whose_data_fails_leaves_no_folder_but_an_existing_one_is_kept(
    tmp_path: Path,
) -> None:
    missing = str(tmp_path / "no-such-data")
    made_here = tmp_path / "new-study"
    with pytest.raises(CnnvitError, match="not found"):
        study(output=str(made_here), dataset=missing)
    assert not made_here.exists()  # nothing left behind, not even the lock
    yours = tmp_path / "yours"
    yours.mkdir()  # an empty folder the user made: used, and never removed
    with pytest.raises(CnnvitError, match="not found"):
        study(output=str(yours), dataset=missing)
    assert yours.is_dir()
