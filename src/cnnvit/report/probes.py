"""The report's probe section: what each probe measured, in two sentences and its numbers.

Reads only the probe results the loader found in RUN/analyses (`RunFacts.analyses`); the
verdicts built on them are in the claims table, from the evidence engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .facts import RunFacts, show
from .render import Block

# Two sentences per probe, with its reference: what it measures and how to read it.
EXPLAIN = {
    "calibration": "Calibration asks whether a model's confidence matches how often it is "
    "right: expected calibration error (15 equal-width bins), negative log-likelihood and Brier "
    "score on the test split, before and after temperature scaling fitted on the validation "
    "split (Guo et al. 2017). Lower is better; a large drop after scaling means the model was "
    "over- or under-confident rather than wrong.",
    "robustness": "Robustness measures accuracy under the common corruptions of CIFAR-10-C at "
    "five severities (Hendrycks & Dietterich 2019), random occlusion and patch shuffling. "
    "Relative robustness is corrupted accuracy divided by clean accuracy, so a model is not "
    "rewarded merely for being more accurate; the drop under patch shuffling shows how much a "
    "model relies on the global arrangement of the image.",
    "locality": "Locality measures how far each model looks: for the ViT, the mean attention "
    "distance per layer and head (Dosovitskiy et al. 2021, fig. 7); for the CNN, the effective "
    "receptive field per stage (Luo et al. 2016). Small distances mean local features, distances "
    "near half the image mean global context.",
    "explanations": "Explanations show what each model looks at: Grad-CAM for the CNN "
    "(Selvaraju et al. 2017) and attention rollout for the ViT (Abnar & Zuidema 2020). Their "
    "faithfulness is measured, not assumed: deleting the most important pixels first should "
    "drop the score faster (lower deletion AUC) than a random map does (Petsiuk et al. 2018).",
    "longrange": "The long-range probe trains both architectures, with the same recipe, on a "
    "synthetic task built in code whose label depends on the relation between two distant "
    "regions of the image. A model that relates distant regions learns it; one limited to local "
    "features stays near chance.",
}


def _value(x: Any) -> str:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return "n/a"
    return show(x, ".3f") if abs(x) < 100 else show(x, ",.1f")


def probe_blocks(f: RunFacts, run_dir: Path) -> tuple[list[Block], dict[str, bytes]]:
    """The Probes section's blocks and the probe figures it embeds (read from RUN/analyses)."""
    if not f.analyses:
        return [], {}
    blocks: list[Block] = [("h2", "Probes")]
    pngs: dict[str, bytes] = {}
    for name, result in f.analyses.items():
        blocks.append(("h3", name.capitalize()))
        if name in EXPLAIN:
            blocks.append(("p", EXPLAIN[name]))
        claims = result.get("claims") or {}
        rows = [
            [metric, _value(v.get("cnn")), _value(v.get("vit"))] for metric, v in claims.items()
        ]
        if rows:
            blocks.append(("table", ["measure", "CNN", "ViT"], rows, "lrr"))
        settings = result.get("settings") or {}
        if settings:
            shown = ", ".join(f"{k} {v}" for k, v in settings.items() if not isinstance(v, dict))
            blocks.append(("p", f"Settings: {shown}; seed {result.get('seed', 'n/a')}; "
                                f"{result.get('seconds', 0):.1f} s."))  # fmt: skip
        for figure in result.get("figures") or []:
            path = run_dir / "analyses" / figure
            if path.is_file():
                key = f"probe-{Path(figure).stem}"
                pngs[key] = path.read_bytes()
                blocks.append(("figure", key, f"{name}: {Path(figure).stem}"))
    return blocks, pngs
