"""Report facts: a loaded run's figures computed once into a typed object, and number formats.

`facts_from_run(run)` is the only place the report looks inside a `Run`; the figures, the
reflection and the assembly read `RunFacts`. Numbers become text through `show`, the formatter
the report shares with the model cards (cnnvit.formatting), re-exported here with the helpers
below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import FAMILY_NAMES, CompareConfig
from ..evidence import Verdict, cell_from_run, judge_claims
from ..evidence.cells import epochs_to_95 as cell_epochs_to_95
from ..formatting import num, show  # noqa: F401 - show: the report's modules import it from here
from ..runs import Run
from .study_facts import earlier_spreads

SIDES = ("cnn", "vit")
ROLE = FAMILY_NAMES
SMALL_DATA = 10_000  # training images below which a dataset counts as small


@dataclass(frozen=True)
class RunFacts:
    """Everything the report says, computed once from a run."""

    name: str
    status: str
    missing: list[str]
    config: CompareConfig
    models: dict[str, dict[str, Any]]  # complete models' run.json blocks, keyed cnn/vit
    class_names: list[str]
    dataset: dict[str, Any]
    comparison: dict[str, Any]
    environment: dict[str, Any]
    who: dict[str, str]
    acc: dict[str, float | None]
    diff: float | None  # ViT minus CNN test accuracy, in points
    p: float | None  # McNemar's exact p-value
    ratio: dict[str, float | None]  # ViT / CNN
    e95: dict[str, tuple[int | None, float | None, float | None]]
    n_train: float | None
    verdicts: list[Verdict] = field(default_factory=list)  # the evidence engine's, one run
    analyses: dict[str, dict[str, Any]] = field(default_factory=dict)  # probe name -> JSON
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def both(self) -> bool:
        """True when both models finished, so the two can be compared."""
        return all(k in self.models for k in SIDES)


def facts_from_run(run: Run) -> RunFacts:
    """Read a loaded run once; derived figures included."""
    models = {k: run.models[k].results for k in SIDES if k in run.complete_models}
    comp = run.comparison or {}
    acc = {k: num(lookup(models.get(k, {}), "test.accuracy")) for k in SIDES}
    diff = num(comp.get("accuracy_difference_points"))
    if diff is None and None not in acc.values():
        diff = 100 * (acc["vit"] - acc["cnn"])  # type: ignore[operator]
    paths = {
        "params": "params",
        "flops": "flops_per_image",
        "latency": "efficiency.latency_ms_batch1",
        "train_tp": "efficiency.train_images_per_second",
        "infer_tp": "efficiency.inference_images_per_second",
    }
    ds = run.dataset
    both = all(k in models for k in SIDES)
    return RunFacts(
        name=ds.get("name") or run.config.data.dataset,
        status=run.status,
        missing=run.missing,
        config=run.config,
        models=models,
        class_names=[str(c) for c in ds.get("class_names") or []],
        dataset=ds,
        comparison=comp,
        environment=run.environment,
        who={k: f"the {ROLE[k]} ({run.models[k].name})" for k in SIDES if k in run.models},
        acc=acc,
        diff=diff,
        p=num(comp.get("mcnemar_p_value")),
        ratio={
            k: ratio(lookup(models["vit"], p), lookup(models["cnn"], p)) if both else None
            for k, p in paths.items()
        },
        e95={k: epochs_to_95(models[k]) if k in models else (None, None, None) for k in SIDES},
        n_train=num(lookup(ds, "splits.train")),
        verdicts=judge_claims([cell_from_run(run)], prior=earlier_spreads(run)) if both else [],
        analyses=run.analyses,
        extra={
            "resolved": run.resolved,
            "pairing": run.raw.get("pairing") or {},
            "budget": run.raw.get("budget") or {},
        },
    )


def lookup(d: Any, path: str, default: Any = None) -> Any:
    """`d["a"]["b"]` for path "a.b", or `default` where any step is missing or null."""
    for key in path.split("."):
        if not isinstance(d, dict) or d.get(key) is None:
            return default
        d = d[key]
    return d


def ratio(a: Any, b: Any) -> float | None:
    a, b = num(a), num(b)
    return a / b if a is not None and b else None


def epochs_to_95(m: dict) -> tuple[int | None, float | None, float | None]:
    """Epochs to reach 95% of the model's own best val accuracy; that best; the epoch-1 value."""
    history = m.get("history") or []
    values = [v for v in (num(r.get("val_accuracy")) for r in history) if v is not None]
    if not values:
        return None, None, None
    return cell_epochs_to_95(history), max(values), values[0]  # the engine's one definition


# --- formatting ----------------------------------------------------------------------------


def times(r: float | None) -> str:
    return "n/a" if r is None else f"{r:.2f}×"


def p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def f1_by_class(m: dict[str, Any]) -> dict[str, float]:
    rows = lookup(m, "test.per_class", [])
    return {str(r.get("class")): num(r.get("f1")) for r in rows if num(r.get("f1")) is not None}
