"""The evidence engine on synthetic cell tables whose truth is known, and its statistics against
scipy, a published reference value and hand computations."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats as sps

from cnnvit.errors import CnnvitError
from cnnvit.evidence import (
    CLAIMS,
    CellRecord,
    Claim,
    cell_from_run,
    crossing,
    decide,
    explain,
    fraction_table,
    judge_claims,
    register_claim,
    stats,
    verdict_row,
    verdict_sentence,
    verdict_table_markdown,
)
from cnnvit.evidence.claims import claim_by_id
from cnnvit.evidence.engine import direction, family_level, seeds_needed

FRACTIONS = [(0.1, 130), (0.25, 325), (0.5, 650), (1.0, 1300)]
PAIR = "convnext-micro+vit-micro"


def _metrics(cnn_acc: float, vit_acc: float, **overrides: tuple[float, float]) -> dict:
    base = {
        "params": (2.85e6, 2.69e6),
        "flops_per_image": (185e6, 366e6),
        "latency_ms_batch1": (2.3, 2.8),
        "inference_images_per_second": (1000.0, 700.0),
        "train_images_per_second": (434.0, 437.0),
        "train_seconds": (30.0, 31.0),
        "epochs_to_95": (3, 4),
        "overfit_gap": (1.0, 1.5),
    }
    base.update(overrides)
    cnn = {k: v[0] for k, v in base.items()} | {"accuracy": cnn_acc}
    vit = {k: v[1] for k, v in base.items()} | {"accuracy": vit_acc}
    return {"cnn": cnn, "vit": vit}


def table(diff, seeds=(0, 1, 2), fractions=FRACTIONS, pretrained=False, pretraining=None,
          adaptation="", **overrides):  # fmt: skip
    """Cells where ViT - CNN accuracy is diff(seed, n_train) (a fraction, not points)."""
    cells = []
    for seed in seeds:
        for fraction, n_train in fractions:
            cnn = 0.6 + 0.3 * fraction
            extra = {k: v(seed, n_train) if callable(v) else v for k, v in overrides.items()}
            cells.append(
                CellRecord(
                    PAIR,
                    fraction,
                    n_train,
                    seed,
                    pretrained,
                    _metrics(cnn, cnn + diff(seed, n_train), **extra),
                    pretraining=pretraining or {},
                    adaptation=adaptation,
                )
            )
    return cells


def by_id(verdicts):
    return {v.claim_id: v for v in verdicts}


SEED_NOISE = {0: 0.002, 1: -0.003, 2: 0.001}  # accuracy (fraction): +-0.3 points across seeds


# ---------------------------------------------------------------- statistics


def test_mcnemar_is_the_exact_binomial_test_on_discordant_pairs():
    only_cnn, only_vit = 12, 3
    n = only_cnn + only_vit
    hand = 2 * sum(math.comb(n, i) for i in range(only_vit + 1)) / 2**n
    assert stats.mcnemar_exact_p(only_cnn, only_vit) == pytest.approx(hand, rel=1e-12)
    assert stats.mcnemar_exact_p(only_cnn, only_vit) == pytest.approx(
        sps.binomtest(only_cnn, n, 0.5).pvalue
    )
    assert stats.mcnemar_exact_p(0, 0) == 1.0
    assert stats.mcnemar_exact_p(5, 5) == 1.0


def test_newcombe_paired_interval_matches_the_published_example():
    # Fagerland, Lydersen & Laake, "Statistical Analysis of Contingency Tables", ch. 8 (Cavo et
    # al. 2012), as tested in the R package contingencytables: table [[59, 6], [16, 80]] gives
    # -0.0621 (95% CI -0.1186 to -0.0046) for row-1 minus column-1 proportion.
    low, high = stats.newcombe_paired_interval(both=59, only_vit=6, only_cnn=16, neither=80)
    assert low == pytest.approx(-0.1186, abs=5e-5)
    assert high == pytest.approx(-0.0046, abs=5e-5)
    evidence = stats.paired_accuracy_difference(
        {"both": 59, "only_vit": 6, "only_cnn": 16, "neither": 80}
    )
    assert evidence.estimate == pytest.approx(100 * -10 / 161)
    assert (evidence.low, evidence.high) == pytest.approx((100 * low, 100 * high))
    assert evidence.p_value == pytest.approx(sps.binomtest(6, 22, 0.5).pvalue)
    assert evidence.n == 161


def test_mean_difference_is_a_student_t_interval():
    values = [-4.8, -5.3, -4.9, -5.6]
    evidence = stats.mean_difference(values, "points")
    n, mean, sd = len(values), np.mean(values), np.std(values, ddof=1)
    half = sps.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    assert evidence.estimate == pytest.approx(mean)
    assert (evidence.low, evidence.high) == pytest.approx((mean - half, mean + half))
    t = mean / (sd / math.sqrt(n))
    assert evidence.p_value == pytest.approx(2 * sps.t.sf(abs(t), n - 1))
    assert evidence.n == n and "t" in evidence.method


def test_zero_spread_uses_the_sign_test_not_an_infinite_t():
    same = stats.mean_difference([2.0, 2.0, 2.0], "epochs")
    assert same.p_value == pytest.approx(0.25)  # 3 of 3 positive: 2 * 0.5**3
    assert (same.low, same.high) == (2.0, 2.0)
    assert stats.mean_difference([0.0, 0.0], "epochs").p_value == 1.0
    one = stats.mean_difference([3.0], "points")
    assert one.p_value is None and math.isnan(one.low)


def test_log_ratio_is_the_geometric_mean_with_a_t_interval_on_logs():
    vit, cnn = [2.9, 2.7, 3.1, 2.8], [2.3, 2.2, 2.4, 2.35]
    logs = np.log(np.array(vit) / np.array(cnn))
    evidence = stats.mean_log_ratio(vit, cnn)
    half = sps.t.ppf(0.975, 3) * np.std(logs, ddof=1) / 2
    assert evidence.estimate == pytest.approx(math.exp(logs.mean()))
    assert evidence.low == pytest.approx(math.exp(logs.mean() - half))
    assert evidence.high == pytest.approx(math.exp(logs.mean() + half))
    assert evidence.scale == "ratio"


def test_slope_per_doubling_is_t_over_per_seed_slopes():
    sizes = [100, 200, 400, 800]
    slopes = {0: 1.0, 1: 1.4, 2: 0.9}
    by_seed = {
        s: [(n, 3.0 + b * math.log2(n) + 0.01 * (i % 2)) for i, n in enumerate(sizes)]
        for s, b in slopes.items()
    }
    evidence = stats.slope_per_doubling(by_seed, "points per doubling")
    fitted = [sps.linregress(np.log2(sizes), [d for _, d in p]).slope for p in by_seed.values()]
    assert fitted == pytest.approx(list(slopes.values()), abs=0.01)
    expected = sps.ttest_1samp(fitted, 0.0)
    assert evidence.estimate == pytest.approx(np.mean(fitted))
    assert evidence.p_value == pytest.approx(expected.pvalue)
    one = stats.slope_per_doubling({0: by_seed[0]}, "points per doubling")
    fit = sps.linregress(np.log2(sizes), [d for _, d in by_seed[0]])
    assert one.p_value == pytest.approx(fit.pvalue)
    assert one.high - one.estimate == pytest.approx(sps.t.ppf(0.975, 2) * fit.stderr)


def test_curve_crossing_interpolates_in_log_size():
    # -2 at 100 images, +2 at 400: zero halfway in log2 size, at 200 images.
    assert stats.crossing_log2([(100, -2.0), (400, 2.0)]) == pytest.approx(math.log2(200))
    assert stats.crossing_log2([(100, -2.0), (400, -1.0)]) is None
    seeds = {0: [(100, -2.0), (400, 2.0)], 1: [(100, -3.0), (400, 1.0)], 2: [(100, -1.0)]}
    crossing = stats.curve_crossing(seeds)
    logs = [math.log2(200), math.log2(100) + 2 * 0.75]
    assert (crossing.seeds, crossing.seeds_crossing) == (2, 2)
    assert crossing.n_train == pytest.approx(2 ** np.mean(logs))
    ci = sps.ttest_1samp(logs, 0).confidence_interval()
    assert (crossing.low, crossing.high) == pytest.approx((2**ci.low, 2**ci.high))


def test_holm_matches_a_hand_computed_example():
    # sorted 0.01, 0.03, 0.04 -> x3, x2, x1 = 0.03, 0.06, 0.04 -> running max 0.03, 0.06, 0.06
    assert stats.holm_adjust([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm_adjust([]) == []


# ---------------------------------------------------------------- verdicts on known truths


def test_clear_cnn_advantage_is_supported():
    verdicts = by_id(judge_claims(table(lambda s, n: -0.05 + SEED_NOISE[s])))
    v = verdicts["data_efficiency"]
    assert (v.outcome, v.direction, v.rule) == ("supported", "leans CNN", "significant_meaningful")
    assert v.effect == pytest.approx(-5.0 + 100 * np.mean(list(SEED_NOISE.values())))
    assert v.evidence.n == 3 and v.p_adjusted < 0.05
    assert "130 training images" in explain(v)
    # A constant gap does not change with data: a meaningful slope for the ViT is ruled out.
    assert (
        by_id(judge_claims(table(lambda s, n: -0.05 + SEED_NOISE[s])))["gains_from_data"].outcome
        == "contradicted"
    )


def test_no_difference_is_inconclusive_when_noisy_and_contradicted_when_tight():
    noisy = by_id(judge_claims(table(lambda s, n: {0: 0.02, 1: -0.025, 2: 0.01}[s])))
    v = noisy["data_efficiency"]
    assert v.outcome == "inconclusive" and v.rule == "not_significant"
    assert v.interval[0] < -1.0  # the interval still allows a 1-point CNN advantage
    tight = by_id(judge_claims(table(lambda s, n: SEED_NOISE[s] / 10)))
    v = tight["data_efficiency"]
    assert (v.outcome, v.rule) == ("contradicted", "ruled_out")
    assert -1.0 < v.interval[0] and v.interval[1] < 1.0


def test_reverse_effect_is_contradicted_and_leans_vit():
    v = by_id(judge_claims(table(lambda s, n: 0.05 + SEED_NOISE[s])))["data_efficiency"]
    assert (v.outcome, v.direction, v.rule) == ("contradicted", "leans ViT", "significant_opposite")


def test_large_but_noisy_effect_stays_inconclusive():
    v = by_id(judge_claims(table(lambda s, n: {0: -0.15, 1: 0.02, 2: -0.02}[s])))["data_efficiency"]
    assert v.effect == pytest.approx(-5.0)
    assert (v.outcome, v.direction) == ("inconclusive", "leans CNN")


def test_vit_gaining_with_data_is_supported():
    # ViT - CNN goes from -6 points at 130 images to +3.0 at 1,300: ~2 points per doubling.
    def diff(s, n):  # seed noise that flips sign with size, so each seed's slope differs
        flip = (-1) ** [size for _, size in FRACTIONS].index(n)
        return (-6 + 2.0 * math.log2(n / 130)) / 100 + flip * SEED_NOISE[s]

    verdicts = judge_claims(table(diff))
    v = by_id(verdicts)["gains_from_data"]
    assert (v.outcome, v.direction) == ("supported", "leans ViT")
    assert v.effect == pytest.approx(2.0, abs=0.05)


def test_holm_is_applied_over_every_tested_claim():
    verdicts = judge_claims(table(lambda s, n: -0.02 + SEED_NOISE[s]))
    tested = [v for v in verdicts if v.p_value is not None]
    raw = [v.p_value for v in tested]
    order = np.argsort(raw)
    m, running, hand = len(raw), 0.0, [0.0] * len(raw)
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * raw[i]))
        hand[i] = running
    assert [v.p_adjusted for v in tested] == pytest.approx(hand)
    assert all(v.p_adjusted is None for v in verdicts if v.p_value is None)


def test_costs_use_log_ratios_and_exact_flops():
    jitter = {0: 1.0, 1: 1.03, 2: 0.97}
    cells = table(
        lambda s, n: 0.0,
        latency_ms_batch1=lambda s, n: (2.3 * jitter[s], 2.8 / jitter[s] * (1 + n / 1e5)),
        train_seconds=lambda s, n: (30.0 * jitter[s], 30.5),
    )
    verdicts = by_id(judge_claims(cells))
    flops = verdicts["cheaper_flops"]
    assert flops.evidence.exact and flops.p_value is None
    assert (flops.outcome, flops.effect) == ("supported", pytest.approx(366 / 185))
    latency = verdicts["cheaper_latency"]
    assert latency.outcome == "supported" and latency.evidence.n == 12
    assert latency.effect > 1.1 and latency.direction == "leans CNN"
    assert verdicts["cheaper_training_time"].outcome == "contradicted"  # within 10%, tight
    near = by_id(judge_claims(table(lambda s, n: 0.0, flops_per_image=(185e6, 194e6))))
    assert near["cheaper_flops"].outcome == "contradicted"  # exact 1.05x: short of 10%


def test_unequal_parameters_leave_cost_claims_untested():
    verdicts = by_id(judge_claims(table(lambda s, n: 0.0, params=(2.0e6, 6.0e6))))
    v = verdicts["cheaper_latency"]
    assert v.outcome == "not tested" and "3.00x the CNN's parameters" in explain(v)


def test_single_run_uses_mcnemar_and_leaves_multi_run_claims_untested():
    cell = table(lambda s, n: -0.04, seeds=(0,), fractions=[(1.0, 1294)])[0]
    paired = {"only_cnn": 18, "only_vit": 4, "both": 330, "neither": 7}
    cell = CellRecord(cell.pair, 1.0, 1294, 0, False, cell.metrics, paired)
    verdicts = by_id(judge_claims([cell]))
    v = verdicts["data_efficiency"]
    assert v.p_value == pytest.approx(sps.binomtest(4, 22, 0.5).pvalue)
    assert v.p_adjusted == pytest.approx(v.p_value)  # the only p-value in the family
    assert v.effect == pytest.approx(100 * (4 - 18) / 359)
    assert "McNemar" in v.evidence.method and v.outcome == "supported"
    assert verdicts["gains_from_data"].outcome == "not tested"
    assert verdicts["cheaper_latency"].rule == "no_replicates"
    assert verdicts["cheaper_latency"].outcome == "inconclusive"
    assert verdicts["cheaper_flops"].outcome == "supported"


def test_missing_probe_metric_is_not_tested_and_present_is_judged():
    verdicts = by_id(judge_claims(table(lambda s, n: 0.0)))
    v = verdicts["robustness"]
    assert v.outcome == "not tested" and "robustness probe" in explain(v)
    assert v.effect is None and v.interval is None
    rr = {0: (0.90, 0.80), 1: (0.91, 0.80), 2: (0.89, 0.795)}
    judged = by_id(judge_claims(table(lambda s, n: 0.0, relative_robustness=lambda s, n: rr[s])))
    assert judged["robustness"].outcome == "supported"
    assert judged["robustness"].effect == pytest.approx(-100 * np.mean([0.10, 0.11, 0.095]))


def test_small_data_claims_are_not_tested_on_large_training_sets():
    big = [(0.5, 20_000), (1.0, 40_000)]
    verdicts = by_id(judge_claims(table(lambda s, n: -0.05, fractions=big)))
    assert verdicts["data_efficiency"].outcome == "not tested"
    assert "20,000" in explain(verdicts["data_efficiency"])


def test_groups_by_pair_and_pretraining():
    both = {"cnn": "imagenet-1k", "vit": "imagenet-1k"}
    cells = table(lambda s, n: -0.05 + SEED_NOISE[s]) + table(
        lambda s, n: 0.0, pretrained=True, pretraining=both
    )
    verdicts = judge_claims(cells, claims=[claim_by_id("data_efficiency")])
    assert [(v.pretrained, v.outcome) for v in verdicts] == [
        (False, "supported"),
        (True, "contradicted"),
    ]
    assert "both pretrained on imagenet-1k" in verdicts[1].scope
    assert "from scratch" in verdicts[0].scope


def test_wording_is_shared_and_carries_the_numbers():
    verdicts = judge_claims(table(lambda s, n: -0.05 + SEED_NOISE[s]))
    v = by_id(verdicts)["data_efficiency"]
    sentence = verdict_sentence(v)
    assert (
        sentence.startswith("CNNs are more data-efficient")
        and "**supported** (leans CNN)" in sentence
    )
    # In the claim's direction: CNN - ViT, positive, though the evidence is ViT - CNN.
    assert v.oriented.estimate == pytest.approx(-v.effect) and v.oriented.label == "CNN - ViT"
    assert "CNN - ViT test accuracy" in sentence and "1 point threshold" in sentence
    assert f"{v.oriented.estimate:+.1f} points" in sentence
    row = verdict_row(v)
    assert row["verdict"] == "supported" and row["leans"] == "CNN"
    lines = verdict_table_markdown(verdicts).splitlines()
    assert len(lines) == 2 + len(CLAIMS)


def test_register_claim_adds_once_and_rejects_a_duplicate():
    claim = Claim(
        id="test_only_texture",
        statement="CNNs rely more on texture",
        metric="texture_bias",
        metric_label="texture bias",
        favours="cnn",
        better="higher",
        evidence="per_seed_mean_difference",
        threshold=0.05,
        threshold_why="test",
        unit="fraction",
        scope="test",
    )
    try:
        register_claim(claim)
        with pytest.raises(ValueError):
            register_claim(claim)
        assert claim in CLAIMS
    finally:
        CLAIMS.remove(claim)


def test_no_cells_is_a_user_error():
    with pytest.raises(CnnvitError):
        judge_claims([])


# ---------------------------------------------------------------- decision rule, one branch each


def _evidence(estimate, low, high, p, scale="difference", unit="points", exact=False):
    return stats.Evidence(estimate, low, high, p, "test", 3, unit, scale, exact)


def test_decision_rule_branches():
    acc = claim_by_id("data_efficiency")  # favours CNN, higher better: claimed ViT - CNN < 0
    assert decide(acc, _evidence(-3.0, -4.0, -2.0, 0.01), 0.01) == (
        "supported",
        "significant_meaningful",
    )
    # significant for the CNN but under 1 point, and the interval still reaches -1: inconclusive
    assert decide(acc, _evidence(-0.8, -1.5, -0.1, 0.01), 0.01) == (
        "inconclusive",
        "significant_small",
    )
    # significant for the CNN but the whole interval is under 1 point: a negligible advantage
    assert decide(acc, _evidence(-0.5, -0.8, -0.2, 0.01), 0.01) == ("contradicted", "ruled_out")
    # the raw p is significant, the Holm-adjusted one is not: the adjusted one decides
    assert decide(acc, _evidence(-3.0, -4.0, -2.0, 0.01), 0.2)[0] == "inconclusive"
    assert decide(acc, _evidence(-3.0, math.nan, math.nan, None), None) == (
        "inconclusive",
        "no_replicates",
    )
    # throughput: higher is better, so a ViT/CNN ratio of 0.8 is the CNN's 1.25x advantage
    tput = claim_by_id("cheaper_inference")
    assert decide(tput, _evidence(0.8, 0.75, 0.85, 0.001, "ratio", "x"), 0.001)[0] == "supported"
    assert decide(tput, _evidence(1.2, 1.1, 1.3, 0.001, "ratio", "x"), 0.001) == (
        "contradicted",
        "significant_opposite",
    )
    assert direction(tput, _evidence(1.2, 1.1, 1.3, 0.001, "ratio", "x")) == "leans ViT"
    flops = claim_by_id("cheaper_flops")
    exact = _evidence(1.10, 1.10, 1.10, None, "ratio", "x", exact=True)
    assert decide(flops, exact, None) == ("supported", "exact_meets")  # exactly at threshold
    exact = _evidence(1 / 1.5, 1 / 1.5, 1 / 1.5, None, "ratio", "x", exact=True)
    assert decide(flops, exact, None) == ("contradicted", "exact_short")


# ---------------------------------------------------------------- from a run, curves, probes


def _results(name, acc, val, train_last, params, **eff):
    history = [
        {"epoch": i + 1, "val_accuracy": v, "train_accuracy": 0.5} for i, v in enumerate(val)
    ]
    history[-1]["train_accuracy"] = train_last
    return {
        "name": name,
        "pretrained": False,
        "params": params,
        "flops_per_image": 1e8,
        "history": history,
        "test": {"accuracy": acc, "macro_f1": acc - 0.01},
        "efficiency": eff,
    }


def test_cell_from_run_reads_the_run_json_layout():
    models = {
        "cnn": SimpleNamespace(
            name="convnext-micro",
            pretrained=False,
            results=_results("convnext-micro", 0.98, [0.5, 0.8, 0.9, 0.92], 0.97, 2.85e6,
                             latency_ms_batch1=2.3, train_seconds=30.0),
        ),
        "vit": SimpleNamespace(
            name="vit-micro",
            pretrained=True,
            results=_results("vit-micro", 0.96, [0.3, 0.6, 0.7, 0.96], 0.95, 2.69e6),
        ),
    }  # fmt: skip
    run = SimpleNamespace(
        models=models,
        config=SimpleNamespace(
            data=SimpleNamespace(train_fraction=0.25), train=SimpleNamespace(seed=2, epochs=20)
        ),
        dataset={"name": "digits", "splits": {"train": 323, "validation": 129, "test": 359}},
        comparison={"both_correct": 340, "only_cnn_correct": 12, "only_vit_correct": 4,
                    "both_wrong": 3},
    )  # fmt: skip
    cell = cell_from_run(run, probe_metrics={"ece_before_scaling": {"cnn": 0.05, "vit": 0.03}})
    assert (cell.pair, cell.fraction, cell.n_train, cell.seed) == (
        "convnext-micro+vit-micro",
        0.25,
        323,
        2,
    )
    assert cell.pretrained  # either model pretrained
    cnn, vit = cell.metrics["cnn"], cell.metrics["vit"]
    assert cnn["epochs_to_95"] == 3  # best 0.92, 95% of it 0.874: first reached at epoch 3
    assert vit["epochs_to_95"] == 4  # best 0.96 -> 0.912: only the last epoch
    assert cnn["overfit_gap"] == pytest.approx(5.0) and vit["overfit_gap"] == pytest.approx(-1.0)
    assert cnn["latency_ms_batch1"] == 2.3 and "latency_ms_batch1" not in vit
    assert vit["ece_before_scaling"] == 0.03
    assert cell.paired == {"only_cnn": 12, "only_vit": 4, "both": 340, "neither": 3}
    assert (cell.dataset, cell.epochs) == ("digits", 20)
    scope = judge_claims([cell], claims=[claim_by_id("data_efficiency")])[0].scope
    # The ViT was pretrained, its run recording no pretraining data: unknown, beside scratch.
    assert cell.pretraining == {"cnn": "none (trained from scratch)", "vit": "unknown"}
    assert cell.adaptation == ""  # a run from before --adapt
    assert ("digits, convnext-micro+vit-micro, CNN pretraining none (trained from scratch), "
            "ViT pretraining unknown, 323 training images") in scope  # fmt: skip
    models["vit"].results["pretraining"] = {"data": "imagenet-1k", "source": "model card"}
    run.config.train.adapt = "probe"
    cell = cell_from_run(run)
    assert cell.pretraining["vit"] == "imagenet-1k" and cell.adaptation == "probe"
    assert scope.endswith("1 seed, 20 epochs")


def test_fraction_table_gives_bands_and_paired_differences():
    cells = table(lambda s, n: -0.04 + SEED_NOISE[s])
    rows = fraction_table(cells)
    assert [r.n_train for r in rows] == [n for _, n in FRACTIONS]
    first = rows[0]
    vit = [100 * (0.63 - 0.04 + SEED_NOISE[s]) for s in (0, 1, 2)]
    half = sps.t.ppf(0.975, 2) * np.std(vit, ddof=1) / math.sqrt(3)
    assert first.vit == pytest.approx((np.mean(vit), np.mean(vit) - half, np.mean(vit) + half))
    assert first.difference.estimate == pytest.approx(np.mean(vit) - 63.0)
    assert first.seeds == 3
    curve = {0: [(130, -2.0), (1300, 2.0)], 1: [(130, -1.0), (1300, 3.0)]}
    crossing_cells = [
        CellRecord(PAIR, f, n, s, False, {"cnn": {"accuracy": 0.5}, "vit": {"accuracy": 0.5 + d}})
        for s, points in curve.items()
        for (n, d), f in zip([(n, d / 100) for n, d in points], (0.1, 1.0), strict=True)
    ]
    found = crossing(crossing_cells)[(PAIR, False)]
    expected = [math.log2(130) + 0.5 * math.log2(10), math.log2(130) + 0.25 * math.log2(10)]
    assert found.seeds_crossing == 2
    assert found.n_train == pytest.approx(2 ** np.mean(expected))


def test_a_probe_with_its_own_paired_counts_gets_mcnemar_in_one_run():
    cell = table(lambda s, n: 0.0, seeds=(0,), fractions=[(1.0, 1294)],
                 long_range_accuracy=(0.55, 0.90))[0]  # fmt: skip
    counts = {"only_cnn": 10, "only_vit": 190, "both": 270, "neither": 42}
    cell = CellRecord(cell.pair, 1.0, 1294, 0, False, cell.metrics, None,
                      {"long_range_accuracy": counts})  # fmt: skip
    v = by_id(judge_claims([cell]))["long_range"]
    assert v.p_value == pytest.approx(sps.binomtest(190, 200, 0.5).pvalue)
    assert v.effect == pytest.approx(100 * 180 / 512)
    assert (v.outcome, v.direction) == ("supported", "leans ViT")


# --- effects in the claim's direction, intervals at the Holm level, costs from timing repeats


def _cost_cell(seed: int, vit: list[float], cnn: list[float], metric: str) -> CellRecord:
    metrics = _metrics(0.9, 0.9, **{metric: (float(np.median(cnn)), float(np.median(vit)))})
    repeats = {"vit": {metric: vit}, "cnn": {metric: cnn}}
    return CellRecord(
        PAIR, 1.0, 1300, seed, False, metrics, repeats=repeats, host="a test CPU, fp32"
    )


def test_a_several_times_faster_model_is_supported_from_one_runs_timing_repeats():
    vit = [100.0, 104.0, 97.0, 101.0, 99.0]
    cnn = [900.0, 930.0, 880.0, 910.0, 905.0]
    cell = _cost_cell(0, vit, cnn, "inference_images_per_second")
    v = by_id(judge_claims([cell]))["cheaper_inference"]
    assert v.outcome == "supported" and v.direction == "leans CNN"
    # Welch's t on the log timings, computed here from scipy.
    x, y = np.log(vit), np.log(cnn)
    welch = sps.ttest_ind(x, y, equal_var=False)
    assert v.p_value == pytest.approx(welch.pvalue, rel=1e-6)
    assert v.oriented.estimate == pytest.approx(math.exp(y.mean() - x.mean()))  # CNN/ViT ~9x
    low, high = v.oriented.low, v.oriented.high
    assert 1.1 < low < v.oriented.estimate < high
    assert "timed on a test CPU, fp32" in v.scope and "within-run" in v.evidence.method
    sentence = verdict_sentence(v)
    assert f"The CNN's inference throughput was {v.oriented.estimate:.2f}x the ViT's" in sentence


def test_the_study_in_the_issue_reads_as_its_numbers():
    """Two cells whose ViT/CNN throughput is 0.09x on average but whose two values differ a
    lot: Holm adjusts the p-value, so the interval shown widens to the same level and includes
    1x, and the sentence states the CNN's advantage, not the ViT's."""
    cells = [CellRecord(PAIR, f, n, 0, False,
                        _metrics(0.8, 0.8, inference_images_per_second=(1000.0, r * 1000.0),
                                 latency_ms_batch1=(2.0, 2.0 + f), train_seconds=(30.0, 30.0 + n)))
             for (f, n), r in (((0.5, 1000), 0.03), ((1.0, 4000), 0.27))]  # fmt: skip
    verdicts = judge_claims(cells)
    v = by_id(verdicts)["cheaper_inference"]
    assert v.p_adjusted > v.p_value and v.p_adjusted >= 0.05
    assert v.outcome == "inconclusive" and v.direction == "leans CNN"
    assert v.evidence.confidence > 0.95
    assert v.oriented.low < 1 < v.oriented.high  # not significant: the interval holds 1x
    assert v.oriented.estimate > 1 and v.oriented.label == "CNN/ViT"
    sentence = verdict_sentence(v)
    assert "The CNN's inference throughput was" in sentence and "not significant" in sentence


@pytest.mark.parametrize("claim_id", ["data_efficiency", "calibration", "cheaper_inference",
                                      "cheaper_latency", "gains_from_data"])  # fmt: skip
@pytest.mark.parametrize("sign", [1, -1])
@pytest.mark.parametrize("size", [0.2, 3.0, 30.0])
@pytest.mark.parametrize("spread", [0.05, 1.0, 20.0])
@pytest.mark.parametrize("seeds", [1, 2, 5])
def test_sentence_direction_threshold_side_and_verdict_agree_with_the_numbers(
    claim_id: str, sign: int, size: float, spread: float, seeds: int
):
    claim = claim_by_id(claim_id)
    rng = np.random.default_rng(seeds * 7 + int(size * 10))
    effect = sign * size  # in the claim's direction: positive is what the claim says
    noise = rng.normal(0, spread, seeds)
    raw = claim.claimed_sign * (effect + noise)  # ViT - CNN (points), or log ViT/CNN x 10
    if claim.evidence == "cost_ratio":
        values = [math.exp(r / 10) for r in raw]
        evidence = stats.mean_log_ratio(values, [1.0] * seeds, "cell")
    else:
        evidence = stats.mean_difference(list(raw), claim.unit, "seed")
    p_adjusted = None if evidence.p_value is None else min(1.0, evidence.p_value * 3)
    if evidence.p_value is not None:  # as the engine does: the interval at the Holm level
        level = family_level(evidence.p_value, p_adjusted)
        if claim.evidence == "cost_ratio":
            evidence = stats.mean_log_ratio(values, [1.0] * seeds, "cell", level)
        else:
            evidence = stats.mean_difference(list(raw), claim.unit, "seed", level)
    outcome, rule = decide(claim, evidence, p_adjusted)
    from cnnvit.evidence.verdict import Verdict

    v = Verdict(claim.id, claim.statement, outcome, direction(claim, evidence), evidence,
                evidence.p_value, p_adjusted, claim.threshold, claim.unit, "", rule=rule,
                seeds_needed=seeds_needed(claim, evidence, outcome)[0], spread=evidence.spread,
                claim=claim)  # fmt: skip
    o = v.oriented
    null = 1.0 if claim.evidence == "cost_ratio" else 0.0
    threshold = 1 + claim.threshold if claim.evidence == "cost_ratio" else claim.threshold
    sentence = verdict_sentence(v)
    # The direction named is the family the oriented estimate favours.
    favoured = claim.favours.upper() if claim.favours == "cnn" else "ViT"
    if o.estimate > null:
        assert v.direction == f"leans {favoured}"
    elif o.estimate < null:
        assert v.direction != f"leans {favoured}"
    # The verdict follows the numbers it prints.
    significant = p_adjusted is not None and p_adjusted < 0.05
    if outcome == "supported":
        assert significant and o.estimate >= threshold
    if outcome == "contradicted":
        assert (significant and o.estimate < null) or o.high < threshold
    if outcome == "inconclusive" and p_adjusted is not None:
        assert not (significant and o.estimate >= threshold) and o.high >= threshold
    # The interval agrees with the test: it excludes no effect exactly when significant.
    if p_adjusted is not None and evidence.low != evidence.high:
        assert (o.low > null or o.high < null) == significant, (o, p_adjusted)
    # Words match: "not significant" beside an interval holding no difference, and the
    # figure in the sentence is the oriented estimate.
    if "not significant" in sentence:
        assert o.low <= null <= o.high
    digits = 2 if "per" in claim.unit else 1  # points per doubling: two decimals
    shown = f"{o.estimate:.2f}x" if claim.unit == "x" else f"{o.estimate:+.{digits}f}"
    assert shown in sentence or shown.replace("+", "") in sentence or "-0.0" in shown
    # What it would take: said for inconclusive accuracy claims only, as a number from two
    # seeds on, and as unknown from one.
    power = outcome == "inconclusive" and claim.power_estimate
    assert ("Power estimate" in sentence) == (power and seeds >= 2)
    assert ("would settle it is unknown" in sentence) == (power and seeds == 1)
    if power and seeds >= 2:
        assert f"about {v.seeds_needed} seeds" in sentence and v.seeds_needed >= 2


# ---------------------------------------------------------------- what it would take


def test_power_estimate_matches_the_normal_approximation_by_hand():
    # ((z_0.975 + z_0.80) * sd / T)^2 = ((1.95996 + 0.84162) * 2 / 1)^2 = 31.4 -> 32 seeds.
    assert stats.seeds_to_resolve(2.0, 1.0) == 32
    assert stats.seeds_to_resolve(4.0, 1.0) == 126  # twice the spread: four times the seeds
    assert stats.seeds_to_resolve(2.0, 2.0) == 8  # twice the threshold: a quarter
    # At a Holm-widened 99% level: ((2.57583 + 0.84162) * 2)^2 = 46.7 -> 47.
    assert stats.seeds_to_resolve(2.0, 1.0, confidence=0.99) == 47
    assert stats.seeds_to_resolve(0.1, 1.0) == 2  # a t-test needs two seeds at least
    # No spread: the sign test, 2 / 2^n < 0.05 from n = 6 (2 / 2^5 = 0.0625).
    assert stats.seeds_to_resolve(0.0, 1.0) == 6


def test_an_inconclusive_accuracy_claim_says_how_many_seeds_would_settle_it():
    # ViT - CNN at the smallest size: +2.0, -2.5, +1.0 points over three seeds (SD 2.36).
    v = by_id(judge_claims(table(lambda s, n: {0: 0.02, 1: -0.025, 2: 0.01}[s])))
    accuracy = v["data_efficiency"]
    assert accuracy.outcome == "inconclusive"
    assert accuracy.spread == pytest.approx(np.std([2.0, -2.5, 1.0], ddof=1))
    expected = stats.seeds_to_resolve(accuracy.spread, 1.0, accuracy.evidence.confidence)
    assert accuracy.seeds_needed == expected > 3
    sentence = verdict_sentence(accuracy)
    assert f"Power estimate: about {expected} seeds would detect an effect of 1 point" in sentence
    assert "over 3 seeds" in sentence and "normal approximation" in sentence
    # Noisier seeds need more of them.
    noisier = by_id(judge_claims(table(lambda s, n: {0: 0.04, 1: -0.05, 2: 0.02}[s])))
    assert noisier["data_efficiency"].seeds_needed > accuracy.seeds_needed
    # Claims that are not inconclusive accuracy or convergence claims carry none.
    for verdict in v.values():
        if verdict.outcome != "inconclusive" or not verdict.claim.power_estimate:
            assert verdict.seeds_needed is None
            assert "Power estimate" not in verdict_sentence(verdict)


def test_one_run_leaves_the_seeds_needed_unknown():
    cell = table(lambda s, n: 0.0, seeds=(0,), fractions=[(0.1, 130)])[0]
    cell = CellRecord(**{**cell.__dict__, "paired": {"only_cnn": 5, "only_vit": 4, "both": 100,
                                                     "neither": 21}})  # fmt: skip
    v = by_id(judge_claims([cell]))["data_efficiency"]
    assert v.outcome == "inconclusive" and v.seeds_needed is None and v.spread is None
    assert "How many seeds would settle it is unknown" in verdict_sentence(v)


# ---------------------------------------------------------------- pretraining and adaptation

SCRATCH_AND_IMAGENET = {"cnn": "imagenet-1k", "vit": "none (trained from scratch)"}
WEIGHT_CLAIMS = {c.id for c in CLAIMS if c.weights_matter}


def _clear_cnn_lead(**kwargs):
    return table(lambda s, n: -0.05 + SEED_NOISE[s], **kwargs)


def test_a_pretrained_versus_scratch_pair_is_confounded_for_architecture_claims_only():
    verdicts = by_id(judge_claims(_clear_cnn_lead(pretrained=True,
                                                  pretraining=SCRATCH_AND_IMAGENET)))  # fmt: skip
    v = verdicts["data_efficiency"]
    assert v.outcome == "confounded" and v.p_adjusted is None and v.direction == "leans CNN"
    assert "one model pretrained, one not" in v.reason and "CNN imagenet-1k" in v.reason
    assert verdict_row(v)["verdict"] == f"confounded ({v.reason})"  # the reason in the table
    assert v.reason in verdict_sentence(v) and "Not judged" in verdict_sentence(v)
    assert v.oriented.estimate == pytest.approx(5.0, abs=0.5)  # its numbers are still shown
    # Every claim resting on what the weights learned, and only those, is confounded; costs
    # are judged as in a from-scratch pair.
    assert {i for i, x in verdicts.items() if x.outcome == "confounded"} == {
        i for i in WEIGHT_CLAIMS if verdicts[i].evidence is not None
    } and "data_efficiency" in WEIGHT_CLAIMS
    assert verdicts["cheaper_latency"].outcome == "supported"
    assert "CNN pretraining imagenet-1k" in verdicts["cheaper_latency"].scope
    # Kept out of the Holm family: the costs are adjusted over themselves alone.
    tested = [x for x in verdicts.values() if x.p_adjusted is not None]
    raw = [x.p_value for x in tested]
    adjusted = stats.holm_adjust(raw)
    assert [x.p_adjusted for x in tested] == pytest.approx(adjusted)


def test_a_from_scratch_pair_is_not_confounded_and_transfer_claims_are_not_tested():
    verdicts = by_id(judge_claims(_clear_cnn_lead()))
    assert all(v.outcome != "confounded" for v in verdicts.values())
    assert verdicts["data_efficiency"].outcome == "supported"
    transfer = verdicts["transfer_at_scale"]
    assert transfer.outcome == "not tested" and "trained from scratch" in explain(transfer)


def test_same_pretraining_is_judged_whatever_its_spelling_and_unknown_is_confounded():
    same = {"cnn": "ImageNet", "vit": "imagenet-1k"}
    verdicts = by_id(judge_claims(_clear_cnn_lead(pretrained=True, pretraining=same)))
    assert verdicts["data_efficiency"].outcome == "supported"
    transfer = verdicts["transfer_at_scale"]  # the ViT 5 points behind: contradicted
    assert transfer.outcome == "contradicted" and transfer.direction == "leans CNN"
    assert "both pretrained on ImageNet" in transfer.scope
    unknown = {"cnn": "unknown", "vit": "unknown"}  # two unknowns are not the same
    verdicts = by_id(judge_claims(_clear_cnn_lead(pretrained=True, pretraining=unknown)))
    assert verdicts["data_efficiency"].outcome == "confounded"
    assert "pretraining unknown" in verdicts["data_efficiency"].reason
    other = {"cnn": "imagenet-1k", "vit": "imagenet-21k + imagenet-1k"}
    verdicts = by_id(judge_claims(_clear_cnn_lead(pretrained=True, pretraining=other)))
    assert verdicts["transfer_at_scale"].outcome == "confounded"
    assert "pretraining data differ" in verdicts["transfer_at_scale"].reason
    # A cell that records no pretraining: unknown when a model was pretrained.
    verdicts = by_id(judge_claims(_clear_cnn_lead(pretrained=True)))
    assert verdicts["data_efficiency"].outcome == "confounded"


def test_a_probe_run_leaves_training_cost_claims_not_tested_and_inference_judged():
    both = {"cnn": "imagenet-1k", "vit": "imagenet-1k"}
    verdicts = by_id(judge_claims(_clear_cnn_lead(pretrained=True, pretraining=both,
                                                  adaptation="probe")))  # fmt: skip
    for claim_id in ("cheaper_training_throughput", "cheaper_training_time"):
        v = verdicts[claim_id]
        assert v.outcome == "not tested" and "no model training to time" in explain(v)
    assert verdicts["cheaper_inference"].outcome == "supported"
    assert verdicts["cheaper_latency"].outcome == "supported"
    full = by_id(judge_claims(_clear_cnn_lead(pretrained=True, pretraining=both,
                                              adaptation="full")))  # fmt: skip
    assert full["cheaper_training_time"].outcome != "not tested"


@pytest.mark.parametrize("claim_id", ["data_efficiency", "calibration", "gains_from_data",
                                      "slower_convergence", "transfer_at_scale"])  # fmt: skip
@pytest.mark.parametrize("sign", [1, -1])
@pytest.mark.parametrize("size", [0.2, 3.0, 30.0])
@pytest.mark.parametrize("seeds", [1, 3])
def test_a_confounded_sentence_states_its_reason_and_numbers_and_no_verdict(
    claim_id: str, sign: int, size: float, seeds: int
):
    """The grid of the wording test, for the confounded outcome: whatever the effect, its
    direction and the runs behind it, the sentence names the reason, shows the effect in the
    claim's direction with the side it leans, and neither tests nor judges it."""
    claim = claim_by_id(claim_id)
    rng = np.random.default_rng(seeds * 11 + int(size * 10))

    # ViT - CNN (in points of accuracy-like metrics) such that the claim's direction is sign.
    def diff(seed, n):
        effect = sign * size + rng.normal(0, 0.3)
        scale = n / 1300 if claim.evidence == "trend_over_log_size" else 1.0
        return claim.claimed_sign * effect * scale / (claim.to_unit or 1.0)

    extra = {}
    if claim.metric != "accuracy":
        extra[claim.metric] = lambda s, n: (1.0, 1.0 + claim.to_unit * diff(s, n))
    cells = table(diff if claim.metric == "accuracy" else (lambda s, n: 0.0),
                  seeds=tuple(range(seeds)), pretrained=True, pretraining=SCRATCH_AND_IMAGENET,
                  **extra)  # fmt: skip
    if claim.metric not in ("accuracy", "epochs_to_95"):  # a probe metric: scale to [0, 1]
        cells = [
            CellRecord(c.pair, c.fraction, c.n_train, c.seed, c.pretrained,
                       {f: {**c.metrics[f], claim.metric: c.metrics[f][claim.metric] / 100}
                        for f in ("cnn", "vit")}, pretraining=c.pretraining)
            for c in cells
        ]  # fmt: skip
    v = by_id(judge_claims(cells, claims=[claim]))[claim_id]
    assert v.outcome == "confounded" and v.rule == "confounded" and v.p_adjusted is None
    sentence, row = verdict_sentence(v), verdict_row(v)
    assert v.reason in sentence and v.reason in row["verdict"] and row["Holm p"] == ""
    for word in ("supported", "contradicted", "inconclusive", "significant", "Holm-adjusted p"):
        assert word not in sentence
    o = v.oriented
    favoured = "CNN" if claim.favours == "cnn" else "ViT"
    if o.estimate > 0:
        assert v.direction == f"leans {favoured}"
    elif o.estimate < 0:
        assert v.direction != f"leans {favoured}"
    digits = 2 if "per" in claim.unit else 1
    shown = f"{o.estimate:+.{digits}f}"
    assert shown in sentence or "-0.0" in shown
    if v.evidence.low == v.evidence.high or math.isnan(v.evidence.low):
        assert "CI" not in sentence
    else:
        assert math.isclose(v.evidence.confidence, 0.95) and "(95% CI " in sentence


def test_every_outcome_the_engine_has_is_reached_and_worded():
    from cnnvit.evidence import OUTCOMES

    seen = set()
    tables = (
        _clear_cnn_lead(),  # supported
        table(lambda s, n: 0.0),  # no difference, tightly measured: contradicted
        table(lambda s, n: 0.03 * (s - 1)),  # a 3-point spread around 0: inconclusive
        _clear_cnn_lead(pretrained=True, pretraining=SCRATCH_AND_IMAGENET),  # confounded
    )
    for cells in tables:
        for v in judge_claims(cells):
            seen.add(v.outcome)
            assert verdict_sentence(v).startswith(f"{v.statement}: **{v.outcome}**")
            assert verdict_row(v)["verdict"].startswith(v.outcome)
    assert seen == set(OUTCOMES)
