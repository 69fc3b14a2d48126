"""The folk table of CNN-versus-ViT claims, each declared once, with what would settle it.

A `Claim` names the metric it rests on (as recorded per model in a cell's `metrics`), which
family it credits, which side of the metric counts for that family, the evidence function the
engine computes (`cnnvit.evidence.engine.EVIDENCE`), the smallest effect that counts as
practically meaningful (and why that value), and its scope. `CLAIMS` is the one list every
report speaks from; claims resting on probe metrics (robustness, calibration, global context)
are declared here too so that a report shows them as "not tested" until their probe has run.
A later probe with a new question adds one with `register_claim(Claim(...))`.

Metric conventions, shared with the probes (`cnnvit.analyses.CLAIM_METRICS`) and whoever fills
a cell: accuracy-like metrics (accuracy, macro_f1, relative_robustness, ece_before_scaling,
patch_shuffle_drop, long_range_accuracy, erf_radius50_fraction) are fractions in [0, 1] and are
turned into points by `to_unit = 100`; overfit_gap is already in points; epochs_to_95 in
epochs; costs in their natural units, compared as ViT/CNN ratios.

Pretraining. A claim about architectures (`kind` "architecture") rests on the weights the two
models learned, so a pair whose pretraining differs or is unknown (other data, other scale, or
one pretrained and one not) cannot speak to it: the engine reports it **confounded**, with the
reason. Costs (`weights_matter=False`: FLOPs, latency, throughput, training time) depend on
the architecture and the host, not on the weights, and are judged whatever the pretraining.
Transfer claims (`kind` "transfer") are about pretrained models, scoped to the pretraining data
recorded, and are not tested on pairs trained from scratch. A later transfer claim (a linear
probe against full fine-tuning, from `--adapt probe,full`) is declared with `kind="transfer"`
and its own metric, and gets both rules with no change to the engine. Claims that time training
(`times_training`) are not tested for a probe run: a linear classifier on frozen, cached
features has no model training to time.

One claim per cost measure rather than one "cheaper" claim with a vote: FLOPs, latency,
throughput and training time can disagree (twice the FLOPs can cost the same wall time on a CPU
where attention kernels are efficient), a vote would need an arbitrary rule and hide which
measure disagrees, and separate verdicts under the Holm correction keep each one honest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# Below this many training images a dataset counts as small (as in the one-run reflection); the
# small-data claims are about this regime and are not tested above it.
SMALL_DATA_IMAGES = 10_000

# "At equal parameters": cost claims are tested only when the two models' parameter counts are
# within this factor. The presets pair within 10%; past 25% apart, size alone could produce a
# cost gap larger than the 10% threshold, so the difference would not be about architecture.
PARAMS_MATCH_RATIO = 1.25

# Why 10% for every cost: repeated timings of the same model on a shared machine move by about
# this much, and a smaller cost gap rarely changes which model one would deploy.
_COST_WHY = (
    "timings of one model move by about 10% between runs on a shared machine, and a smaller "
    "cost gap rarely changes which model to deploy"
)
_COST_SCOPE = "this device, precision and batch size, at equal parameter counts (within 25%)"


@dataclass(frozen=True)
class Claim:
    """One folk claim and the measurement that would settle it.

    `favours` is the family the claim credits; `better` is the side of the metric that counts for
    a family ("higher" accuracy, "lower" latency; for a property claim such as global context,
    the side that shows more of the property). `threshold` is in `unit` after `to_unit`, except
    for ratio evidence where it is a fraction (0.10 = the ratio must reach 1.10x).
    """

    id: str
    statement: str
    metric: str
    metric_label: str  # how a sentence names the metric: "test accuracy"
    favours: Literal["cnn", "vit"]
    better: Literal["higher", "lower"]
    evidence: str  # name of the evidence function in engine.EVIDENCE
    threshold: float
    threshold_why: str
    unit: str  # unit of the effect: "points", "epochs", "x" for ratios
    scope: str
    to_unit: float = 1.0  # multiply the recorded metric by this to get `unit`
    max_train_images: int | None = None  # the claim is about data below this size
    needs_equal_params: bool = False
    requires: str = ""  # what records the metric when it is missing
    # An accuracy or convergence claim left inconclusive says how many seeds would settle it.
    power_estimate: bool = False
    # "architecture": about CNNs and ViTs as such; "transfer": about pretrained models (see
    # the module docstring for what each implies).
    kind: Literal["architecture", "transfer"] = "architecture"
    weights_matter: bool = True  # False for costs: a pretraining difference cannot confound them
    times_training: bool = False  # not tested for a probe run (no model training to time)

    @property
    def claimed_sign(self) -> int:
        """+1 when the claim says ViT - CNN (or log ViT/CNN) is positive, else -1."""
        vit_higher = 1 if self.better == "higher" else -1
        return vit_higher if self.favours == "vit" else -vit_higher


CLAIMS: list[Claim] = [
    Claim(
        id="data_efficiency",
        statement="CNNs are more data-efficient (more accurate with few training images)",
        metric="accuracy",
        metric_label="test accuracy",
        favours="cnn",
        better="higher",
        evidence="smallest_size_difference",
        threshold=1.0,
        threshold_why=(
            "a gap under 1 accuracy point is within what another seed or test split moves, and "
            "rarely decides a choice of model"
        ),
        unit="points",
        to_unit=100.0,
        scope="at the smallest training size measured, when it is below 10,000 images",
        max_train_images=SMALL_DATA_IMAGES,
        power_estimate=True,
    ),
    Claim(
        id="gains_from_data",
        statement="ViTs gain more from more data",
        metric="accuracy",
        metric_label="ViT - CNN test accuracy",
        favours="vit",
        better="higher",
        evidence="trend_over_log_size",
        threshold=0.5,
        threshold_why=(
            "0.5 points per doubling moves the gap by the 1-point accuracy threshold over 4x "
            "the data"
        ),
        unit="points per doubling",
        to_unit=100.0,
        scope="over the training sizes measured; says nothing beyond the largest",
        power_estimate=True,
    ),
    Claim(
        id="cheaper_flops",
        statement="CNNs need fewer FLOPs per image at equal parameters",
        metric="flops_per_image",
        metric_label="forward FLOPs per image",
        favours="cnn",
        better="lower",
        evidence="exact_cost_ratio",
        threshold=0.10,
        threshold_why="a FLOP gap under 10% rarely changes which model to deploy",
        unit="x",
        scope="at this image size, at equal parameter counts (within 25%)",
        needs_equal_params=True,
        weights_matter=False,
    ),
    Claim(
        id="cheaper_latency",
        statement="CNNs have lower batch-1 latency at equal parameters",
        metric="latency_ms_batch1",
        metric_label="batch-1 latency",
        favours="cnn",
        better="lower",
        evidence="cost_ratio",
        threshold=0.10,
        threshold_why=_COST_WHY,
        unit="x",
        scope=_COST_SCOPE,
        needs_equal_params=True,
        weights_matter=False,
    ),
    Claim(
        id="cheaper_inference",
        statement="CNNs have higher inference throughput at equal parameters",
        metric="inference_images_per_second",
        metric_label="inference throughput",
        favours="cnn",
        better="higher",
        evidence="cost_ratio",
        threshold=0.10,
        threshold_why=_COST_WHY,
        unit="x",
        scope=_COST_SCOPE,
        needs_equal_params=True,
        weights_matter=False,
    ),
    Claim(
        id="cheaper_training_throughput",
        statement="CNNs train on more images per second at equal parameters",
        metric="train_images_per_second",
        metric_label="training throughput",
        favours="cnn",
        better="higher",
        evidence="cost_ratio",
        threshold=0.10,
        threshold_why=_COST_WHY,
        unit="x",
        scope=_COST_SCOPE,
        needs_equal_params=True,
        weights_matter=False,
        times_training=True,
    ),
    Claim(
        id="cheaper_training_time",
        statement="CNNs take less time to train at equal parameters",
        metric="train_seconds",
        metric_label="training time",
        favours="cnn",
        better="lower",
        evidence="cost_ratio",
        threshold=0.10,
        threshold_why=_COST_WHY,
        unit="x",
        scope=_COST_SCOPE + ", with this recipe and epoch budget",
        needs_equal_params=True,
        weights_matter=False,
        times_training=True,
    ),
    Claim(
        id="slower_convergence",
        statement="ViTs converge more slowly",
        metric="epochs_to_95",
        metric_label="epochs to 95% of own best validation accuracy",
        favours="cnn",
        better="lower",
        evidence="per_seed_mean_difference",
        threshold=1.0,
        threshold_why="one epoch is the resolution of the measurement",
        unit="epochs",
        scope="with this recipe, averaged over the training sizes measured",
        power_estimate=True,
    ),
    Claim(
        id="overfits_small_data",
        statement="ViTs overfit more on small data",
        metric="overfit_gap",
        metric_label="final train - validation accuracy gap",
        favours="cnn",
        better="lower",
        evidence="smallest_size_difference",
        threshold=2.0,
        threshold_why=(
            "the gap is a difference of two noisy accuracies (train measured on augmented "
            "batches), so twice the 1-point accuracy threshold"
        ),
        unit="points",
        scope="at the smallest training size measured, when it is below 10,000 images",
        max_train_images=SMALL_DATA_IMAGES,
        power_estimate=True,
    ),
    Claim(
        id="robustness",
        statement="CNNs are more robust to variations of their input",
        metric="relative_robustness",
        metric_label="accuracy under corruption relative to clean accuracy",
        favours="cnn",
        better="higher",
        evidence="per_seed_mean_difference",
        threshold=2.0,
        threshold_why=(
            "a ratio of two noisy accuracies: twice the 1-point accuracy threshold, in points "
            "of clean accuracy"
        ),
        unit="points",
        to_unit=100.0,
        scope="for the corruptions the robustness probe applies, averaged over sizes",
        requires="the robustness probe",
    ),
    Claim(
        id="calibration",
        statement="ViTs are better calibrated",
        metric="ece_before_scaling",
        metric_label="expected calibration error (before temperature scaling)",
        favours="vit",
        better="lower",
        evidence="per_seed_mean_difference",
        threshold=1.0,
        threshold_why=(
            "binned ECE on a few hundred test images is biased and noisy by about 1 point"
        ),
        unit="points",
        to_unit=100.0,
        scope=(
            "the models as trained, before temperature scaling (which is fitted afterwards and "
            "would calibrate either); on this test split, averaged over sizes"
        ),
        requires="the calibration probe",
    ),
    Claim(
        id="global_context",
        statement="ViTs rely more on global context than CNNs",
        metric="patch_shuffle_drop",
        metric_label="accuracy lost when image patches are shuffled",
        favours="vit",
        better="higher",
        evidence="per_seed_mean_difference",
        threshold=2.0,
        threshold_why=(
            "a difference of two accuracy drops, each as noisy as an accuracy: twice the "
            "1-point threshold"
        ),
        unit="points",
        to_unit=100.0,
        scope="shuffling patches keeps local content and destroys global layout",
        requires="the robustness probe",
    ),
    Claim(
        id="long_range",
        statement="ViTs relate distant image regions better than CNNs",
        metric="long_range_accuracy",
        metric_label="accuracy on the long-range same/different task",
        favours="vit",
        better="higher",
        evidence="per_seed_mean_difference",
        threshold=2.0,
        threshold_why=(
            "a fresh pair trained once on a small synthetic task is noisier than the main "
            "comparison: twice the 1-point accuracy threshold"
        ),
        unit="points",
        to_unit=100.0,
        scope="a synthetic task where only the relation between opposite corners decides",
        requires="the long-range probe",
    ),
    Claim(
        id="local_features",
        statement="CNNs look at local features (a smaller effective receptive field)",
        metric="erf_radius50_fraction",
        metric_label="effective receptive field radius (50% of gradient mass, share of side)",
        favours="cnn",
        better="lower",
        evidence="per_seed_mean_difference",
        threshold=5.0,
        threshold_why=(
            "the radius is read on the pixel grid: one pixel is 3% of a 32-pixel side, so a gap "
            "under 5% of the side is within the measurement's resolution"
        ),
        unit="% of side",
        to_unit=100.0,
        scope="the last stage or layer of each model, on test images",
        requires="the locality probe",
    ),
    Claim(
        id="transfer_at_scale",
        statement="ViTs pretrained at scale transfer better than CNNs of the same size",
        metric="accuracy",
        metric_label="test accuracy after adaptation",
        favours="vit",
        better="higher",
        evidence="per_seed_mean_difference",
        threshold=1.0,
        threshold_why=(
            "as for accuracy: a gap under 1 point is within what another seed or test split moves"
        ),
        unit="points",
        to_unit=100.0,
        scope=(
            "both models pretrained on the same recorded data (whether that is 'at scale' is "
            "the data's size) and adapted the same way, at equal parameter counts (within 25%)"
        ),
        needs_equal_params=True,
        power_estimate=True,
        kind="transfer",
    ),
]


def register_claim(claim: Claim) -> Claim:
    """Add a claim (from a probe) to `CLAIMS`; an id already declared is an error."""
    if any(c.id == claim.id for c in CLAIMS):
        raise ValueError(f"claim {claim.id!r} is already declared")
    CLAIMS.append(claim)
    return claim


def claim_by_id(claim_id: str) -> Claim:
    """The declared claim with this id."""
    for claim in CLAIMS:
        if claim.id == claim_id:
            return claim
    raise KeyError(f"no claim {claim_id!r}; declared: {', '.join(c.id for c in CLAIMS)}")
