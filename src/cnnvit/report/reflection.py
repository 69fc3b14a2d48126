"""The reflection: every sentence carries the measured numbers it rests on.

Accuracy (with McNemar's test on paired predictions), cost, learning speed, overfitting, a
verdict on each usual CNN-vs-ViT claim from this run alone, and the caveats of one run.
"""

from __future__ import annotations

from ..pretraining import SCRATCH, UNKNOWN
from .facts import (
    ROLE,
    SIDES,
    RunFacts,
    cap,
    lookup,
    num,
    p_text,
    show,
    times,
)


def accuracy_sentences(f: RunFacts) -> list[str]:
    """[who won, the paired counts, whether it means anything, the seed caveat]."""
    d, p, c = f.diff, f.p, f.comparison
    if d is None:
        won = "Test accuracy was not recorded for both models, so there is no winner."
    elif abs(d) < 0.05:
        won = (
            f"The two models tied on test accuracy ({show(f.acc['cnn'], 'pct')} for the CNN, "
            f"{show(f.acc['vit'], 'pct')} for the ViT)."
        )
    else:
        w, lose = ("vit", "cnn") if d > 0 else ("cnn", "vit")
        won = (
            f"{cap(f.who[w])} won on test accuracy by {abs(d):.1f} points: "
            f"{show(f.acc[w], 'pct')} against {show(f.acc[lose], 'pct')} for the "
            f"{ROLE[lose]}."
        )
    counts = (
        ""
        if p is None or "only_cnn_correct" not in c
        else (
            f"Of the {c.get('test_size', 'n/a')} test images both models got "
            f"{c.get('both_correct', 'n/a')} right and {c.get('both_wrong', 'n/a')} wrong; "
            "only the "
            f"CNN was right on {c['only_cnn_correct']} and only the ViT on "
            f"{c.get('only_vit_correct', 'n/a')}. McNemar's exact test on these paired predictions "
            f"gives {p_text(p)}."
        )
    )
    if p is None:
        means = "No paired test predictions were recorded, so whether it is meaningful is unknown."
    elif p >= 0.05:
        leaning = "" if d is None or abs(d) < 0.05 else f", leaning {'ViT' if d > 0 else 'CNN'}"
        means = (
            f"With {p_text(p)} the difference is not significant: from one run on this test "
            f"set it is inconclusive{leaning}."
        )
    else:
        means = f"With {p_text(p)} a gap this one-sided is unlikely to be chance on this test set."
    # the budget the accuracy holds at and whether both models converged (evidence/budgets.py)
    note = next((v.budget_note for v in f.verdicts if v.budget_note), "")
    means += f" {note}" if note else ""
    seed = (
        "This is one seed, which does not measure seed-to-seed variation: another "
        "initialisation and data order could move either model by an unknown amount."
    )
    return [won, counts, means, seed]


# Timings closer than this ratio are reported as the same cost, not as a win.
SAME_COST = 1.1


def cheaper_to_train(f: RunFacts) -> str | None:
    """ "cnn" or "vit" when its training took under 1 / SAME_COST of the other's time, "same"
    within that, None when a time is missing."""
    secs = {k: num(lookup(f.models[k], "efficiency.train_seconds")) for k in SIDES}
    if None in secs.values():
        return None
    k = min(SIDES, key=lambda s: secs[s])
    return k if secs["vit" if k == "cnn" else "cnn"] > SAME_COST * secs[k] else "same"


def cost_text(f: RunFacts) -> str:
    r = f.ratio
    text = (
        f"Relative to the CNN, the ViT has {times(r['params'])} the parameters and "
        f"{times(r['flops'])} the FLOPs per image, and its batch-1 latency is "
        f"{times(r['latency'])} the CNN's. Its throughput is {times(r['train_tp'])} the "
        f"CNN's in training and {times(r['infer_tp'])} in inference (images per second)."
    )
    secs = {k: num(lookup(f.models[k], "efficiency.train_seconds")) for k in SIDES}
    cheaper = cheaper_to_train(f)
    if getattr(f.config.train, "adapt", "full") == "probe":  # no model training to compare
        text += (
            " Both models were adapted by a linear probe on frozen, cached features, so their "
            "training times and throughputs are the probe's, not the models'."
        )
    elif cheaper is not None:
        k = cheaper if cheaper != "same" else "cnn"
        other = "vit" if k == "cnn" else "cnn"
        if cheaper != "same":
            text += (
                f" {cap(f.who[k])} was cheaper to train ({secs[k]:,.1f} s against "
                f"{secs[other]:,.1f} s)."
            )
        else:  # run-to-run timing noise on a shared machine is of this order
            text += (
                f" Both took about as long to train ({secs['cnn']:,.1f} s for the CNN, "
                f"{secs['vit']:,.1f} s for the ViT: within {SAME_COST - 1:.0%})."
            )
    run = cheaper_to_run(f)
    if run == "same":
        text += " Both cost about the same to run (latency and throughput within 10%)."
    elif run == "depends":
        one = "vit" if r["latency"] < 1 else "cnn"
        bulk = "vit" if r["infer_tp"] > 1 else "cnn"
        text += (
            f" Which is cheaper to run depends on batch size: {f.who[one]} has the lower "
            f"batch-1 latency, {f.who[bulk]} the higher batched throughput."
        )
    elif run is not None:
        text += f" {cap(f.who[run])} is cheaper to run, both one image at a time and in batches."
    return text


def cheaper_to_run(f: RunFacts) -> str | None:
    """ "same" when batch-1 latency and inference throughput are both within SAME_COST; "cnn" or
    "vit" when one has the lower latency and the higher throughput; "depends" (on batch size)
    when each wins one; None when either ratio is missing."""
    r = f.ratio
    close = [
        r[key] is not None and 1 / SAME_COST <= r[key] <= SAME_COST
        for key in ("latency", "infer_tp")
    ]
    if all(close):
        return "same"
    if r["latency"] is None or r["infer_tp"] is None:
        return None
    one = "vit" if r["latency"] < 1 else "cnn"
    bulk = "vit" if r["infer_tp"] > 1 else "cnn"
    return one if one == bulk else "depends"


def speed_margin(f: RunFacts) -> int:
    """Epochs to 95% closer than this are the same speed: an epoch or two (under 10% of the
    run) is within what another seed could change."""
    return max(1, round(0.1 * len(lookup(f.models["cnn"], "history") or [])))


def faster_learner(f: RunFacts) -> str | None:
    """ "cnn" or "vit" when it reached 95% of its best more than `speed_margin` epochs sooner,
    "same" within that, None when a history is missing."""
    ec, ev = f.e95["cnn"][0], f.e95["vit"][0]
    if ec is None or ev is None:
        return None
    return ("cnn" if ec < ev else "vit") if abs(ec - ev) > speed_margin(f) else "same"


def speed_text(f: RunFacts) -> str:
    (ec, bc, fc), (ev, bv, fv) = f.e95["cnn"], f.e95["vit"]
    faster = faster_learner(f)
    if faster is None:
        return "The validation history is missing, so learning speed cannot be compared."
    text = (
        f"To reach 95% of its own best validation accuracy, the CNN needed {ec} epoch"
        f"{'s' * (ec != 1)} (best {show(bc, 'pct')}) and the ViT {ev} (best "
        f"{show(bv, 'pct')}). After epoch 1, validation accuracy was {show(fc, 'pct')} for "
        f"the CNN and {show(fv, 'pct')} for the ViT."
    )
    margin = speed_margin(f)
    if faster != "same":
        return text + f" {cap(f.who[faster])} learned faster."
    return text + (
        f" Both learned at about the same speed (epoch counts within {margin} of each other)."
    )


def overfit_text(f: RunFacts) -> str:
    gaps = {}
    for k in SIDES:
        last = (f.models[k].get("history") or [{}])[-1]
        tr, va = num(last.get("train_accuracy")), num(last.get("val_accuracy"))
        gaps[k] = None if tr is None or va is None else 100 * (tr - va)
    if None in gaps.values():
        return "The training history is missing, so overfitting cannot be judged."
    text = (
        f"At the final epoch, training accuracy minus validation accuracy was "
        f"{gaps['cnn']:+.1f} points for the CNN and {gaps['vit']:+.1f} for the ViT."
    )
    big = max(SIDES, key=lambda s: gaps[s])
    text += (
        " Neither overfits much (both gaps are under 5 points)."
        if gaps[big] < 5
        else f" {cap(f.who[big])} overfits more."
    )
    if min(gaps.values()) < 0 and f.config.train.augment:
        text += (
            " A negative gap is expected here: training accuracy is measured on augmented "
            "batches during the epoch, which are harder than the validation images."
        )
    return text


def pretraining_text(f: RunFacts) -> str:
    """Each model's pretraining as run.json records it, for beside the verdicts: a claim about
    architectures is confounded when the two differ or either is unknown."""
    said = []
    for k in SIDES:
        m = f.models.get(k) or {}
        recorded = m.get("pretraining") or {}
        data = recorded.get("data") or (UNKNOWN if m.get("pretrained") else SCRATCH)
        source = recorded.get("source") or "not recorded by this run"
        read = "" if source == "preset" else f" (read from {source})"
        said.append(f"the {ROLE[k]} {m.get('name', k)}: {data}{read}")
    return (
        "Pretraining of each model: " + "; ".join(said) + ". A verdict about architectures "
        "holds only for "
        "two models pretrained on the same data (or both trained from scratch); otherwise it "
        "is marked confounded, with the reason."
    )


def caveats(f: RunFacts) -> list[str]:
    size = "n/a" if f.n_train is None else f"{int(f.n_train):,}"
    pre = [f.who[k] for k in SIDES if f.models[k].get("pretrained")]
    seed = f.config.train.seed
    return [
        f"One seed{'' if seed is None else f' ({seed})'}: seed-to-seed variation is not measured.",
        f"One dataset size ({size} training images): how the comparison changes with more or "
        "less data is not measured.",
        f"{cap(' and '.join(pre))} started from pretrained weights, which bring outside data: "
        "the comparison is then also of the pretraining, not only of the architecture."
        if pre
        else "Both models were trained from scratch on this dataset alone.",
        "Timings come from one device and depend on hardware, batch size, precision and "
        "software versions.",
    ]
