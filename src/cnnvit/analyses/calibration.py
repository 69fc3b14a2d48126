"""Calibration probe: do the models' confidences match how often they are right?

Per model on the test split: expected calibration error (ECE, 15 equal-width confidence bins,
torchmetrics' multiclass calibration error with the L1 norm), negative log-likelihood and the
multiclass Brier score, before and after temperature scaling (Guo et al., "On Calibration of
Modern Neural Networks", ICML 2017). The temperature is fitted on the validation split only,
by L-BFGS on log T so that T stays positive. Reliability diagrams show both models side by side.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .context import ProbeContext, save_figure

ECE_BINS = 15


def expected_calibration_error(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """ECE over 15 equal-width bins of top-1 confidence (torchmetrics, L1 norm)."""
    from torchmetrics.functional.classification import multiclass_calibration_error

    probabilities = logits.float().softmax(dim=1)
    return float(
        multiclass_calibration_error(
            probabilities, labels, num_classes=logits.shape[1], n_bins=ECE_BINS, norm="l1"
        )
    )


def negative_log_likelihood(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean cross-entropy of the true class, in nats."""
    return float(F.cross_entropy(logits.float(), labels))


def brier_score(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over images of the squared distance between the probabilities and the one-hot label
    (summed over classes, so it ranges 0..2; Brier 1950's multiclass form)."""
    probabilities = logits.float().softmax(dim=1)
    one_hot = F.one_hot(labels, logits.shape[1]).float()
    return float(((probabilities - one_hot) ** 2).sum(dim=1).mean())


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 100) -> float:
    """The temperature T > 0 minimising the NLL of logits / T (L-BFGS on log T)."""
    logits = logits.detach().float().clone()  # a plain tensor even from inference mode
    log_t = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp())


def reliability_bins(logits: torch.Tensor, labels: torch.Tensor) -> list[dict[str, float]]:
    """Per confidence bin (15 equal-width): count, mean confidence, accuracy (empty bins kept)."""
    probabilities = logits.float().softmax(dim=1)
    confidence, predicted = probabilities.max(dim=1)
    correct = (predicted == labels).float()
    edges = torch.linspace(0, 1, ECE_BINS + 1)
    # Bin i holds confidences in [edge_i, edge_i+1), as torchmetrics bins them; 1.0 joins the top.
    index = torch.bucketize(confidence, edges[1:-1], right=True)
    rows = []
    for b in range(ECE_BINS):
        members = index == b
        count = int(members.sum())
        rows.append({
            "low": float(edges[b]),
            "high": float(edges[b + 1]),
            "count": count,
            "confidence": float(confidence[members].mean()) if count else None,
            "accuracy": float(correct[members].mean()) if count else None,
        })  # fmt: skip
    return rows


def summarise(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """ECE, NLL, Brier, accuracy and mean confidence of one set of logits."""
    confidence = logits.float().softmax(dim=1).max(dim=1).values
    return {
        "ece": expected_calibration_error(logits, labels),
        "nll": negative_log_likelihood(logits, labels),
        "brier": brier_score(logits, labels),
        "accuracy": float((logits.argmax(1) == labels).float().mean()),
        "mean_confidence": float(confidence.mean()),
    }


def run(context: ProbeContext) -> dict[str, Any]:
    """Calibration of both models on the whole test split, before and after scaling."""
    models: dict[str, Any] = {}
    for family in context.models:
        test_logits = context.logits(family, "test")
        validation_logits = context.logits(family, "validation")
        temperature = fit_temperature(validation_logits, context.validation_labels)
        scaled = test_logits / temperature
        models[family] = {
            "temperature": temperature,
            "before": summarise(test_logits, context.test_labels),
            "after": summarise(scaled, context.test_labels),
            "reliability_before": reliability_bins(test_logits, context.test_labels),
            "reliability_after": reliability_bins(scaled, context.test_labels),
        }
    figure = _reliability_figure(models, context)
    return {
        "settings": {
            "bins": ECE_BINS,
            "test_images": len(context.test_labels),
            "validation_images": len(context.validation_labels),
            "temperature_fitted_on": "validation",
        },
        "models": models,
        "claims": {
            "ece": {f: m["after"]["ece"] for f, m in models.items()},
            "ece_before_scaling": {f: m["before"]["ece"] for f, m in models.items()},
            "nll": {f: m["after"]["nll"] for f, m in models.items()},
            "brier": {f: m["after"]["brier"] for f, m in models.items()},
        },
        "figures": [figure] if figure else [],
    }


def _reliability_figure(models: dict[str, Any], context: ProbeContext) -> str | None:
    path = context.figure_path("calibration-reliability.png")
    if path is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 4), squeeze=False)
    for ax, (family, result) in zip(axes[0], models.items(), strict=True):
        for key, style, label in (
            ("reliability_before", "o-", "before scaling"),
            ("reliability_after", "s--", f"after (T = {result['temperature']:.2f})"),
        ):
            rows = [r for r in result[key] if r["count"]]
            ax.plot([r["confidence"] for r in rows], [r["accuracy"] for r in rows], style,
                    label=label, markersize=4)  # fmt: skip
        ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8, label="perfect calibration")
        before, after = result["before"]["ece"], result["after"]["ece"]
        name = context.models[family].name
        ax.set_title(f"{family.upper()} {name}\nECE {before:.3f} -> {after:.3f}", fontsize=9)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    return save_figure(figure, path)
