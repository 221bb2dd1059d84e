"""The atlas's statistics against scipy and hand computations: TOST, exact binomial intervals, Fisher and
Barnard, the interaction contrast, the lr-shift fit, and boundary IoU / clDice on masks known by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from seg.study.shape_metrics import ShapeCounts, boundary_band, boundary_counts, cldice_counts, skeleton
from seg.study.shift import fit_shifts
from seg.study.stats import clopper_pearson, collapse_endpoint, interaction, rate_comparison, tost

D = np.array([0.001, -0.002, 0.0015, 0.0005, -0.001, 0.002, 0.0, 0.001])  # small paired differences


def test_tost_is_the_larger_of_two_one_sided_t_tests():
    result = tost(D, margin=0.005)
    lower = stats.ttest_1samp(D, -0.005, alternative="greater").pvalue
    upper = stats.ttest_1samp(D, 0.005, alternative="less").pvalue
    assert result["p"] == pytest.approx(max(lower, upper), rel=1e-12)
    assert result["equivalent"]
    # equivalent at 0.05 exactly when the 90% t interval lies inside the margins
    assert -0.005 < result["ci90_low"] < result["ci90_high"] < 0.005


def test_tost_fails_when_the_interval_reaches_the_margin():
    shifted = D + 0.004  # mean 0.0049: the 90% interval crosses +0.005
    result = tost(shifted, margin=0.005)
    assert not result["equivalent"] and result["ci90_high"] > 0.005
    assert result["p"] == pytest.approx(stats.ttest_1samp(shifted, 0.005, alternative="less").pvalue)
    assert math.isnan(tost([0.01], 0.005)["p"])  # one seed: no test


def test_clopper_pearson_by_hand():
    # k = 0: the upper end solves (1 - p)^n = alpha / 2
    assert clopper_pearson(0, 6) == pytest.approx((0.0, 1 - 0.025 ** (1 / 6)))
    assert clopper_pearson(6, 6) == pytest.approx((0.025 ** (1 / 6), 1.0))
    low, high = clopper_pearson(2, 6)  # the review's [0.04, 0.78]
    assert stats.binom.sf(1, 6, low) == pytest.approx(0.025) and stats.binom.cdf(2, 6, high) == pytest.approx(0.025)
    assert (round(low, 2), round(high, 2)) == (0.04, 0.78)


def test_fisher_by_hand_and_barnard_from_scipy():
    result = rate_comparison(2, 6, 0, 6)
    # hypergeometric: P(2 of the 2 collapses fall in the first 6 of 12) = C(6,2) / C(12,2) = 15 / 66, doubled
    assert result["fisher_p"] == pytest.approx(2 * 15 / 66)
    assert result["barnard_p"] == pytest.approx(stats.barnard_exact([[2, 4], [0, 6]]).pvalue)
    assert result["barnard_p"] < result["fisher_p"]  # Barnard's unconditional test is the more powerful here
    assert rate_comparison(0, 6, 0, 6)["fisher_p"] == 1.0  # nothing failed: nothing to test
    one_sided = rate_comparison(0, 30, 10, 30, alternative="less")
    assert one_sided["fisher_p"] == pytest.approx(stats.fisher_exact([[0, 30], [10, 20]], alternative="less").pvalue)


def test_collapse_is_its_own_endpoint_and_delta_is_given_success():
    head = {"1": 0.0, "2": 0.71, "3": 0.72, "4": 0.02}
    base = {"1": 0.70, "2": 0.70, "3": 0.70, "4": 0.69}
    result = collapse_endpoint(head, base)
    assert (result["k"], result["n"], result["k_other"], result["n_other"]) == (2, 4, 0, 4)
    assert result["collapsed_seeds"] == (["1", "4"], [])
    assert result["given_success"]["n"] == 2 and result["given_success"]["mean_diff"] == pytest.approx(0.015)


def test_interaction_paired_by_seed():
    seeds = [str(s) for s in range(5)]
    plain_base = dict(zip(seeds, [0.80, 0.81, 0.79, 0.82, 0.80], strict=True))
    plain_head = {s: v - 0.010 for s, v in plain_base.items()}  # plain Δ = -0.010 on every seed
    cond_base = dict(zip(seeds, [0.70, 0.72, 0.71, 0.69, 0.70], strict=True))
    extra = [0.001, 0.003, -0.001, 0.002, 0.0]
    cond_head = {s: cond_base[s] - 0.010 + e for s, e in zip(seeds, extra, strict=True)}
    result = interaction(cond_head, cond_base, plain_head, plain_base)
    assert result["paired"] and result["n"] == 5
    assert result["mean"] == pytest.approx(np.mean(extra))
    assert result["p"] == pytest.approx(stats.ttest_1samp(extra, 0.0).pvalue)
    low, high = stats.t.interval(0.95, 4, loc=np.mean(extra), scale=stats.sem(extra))
    assert (result["ci_low"], result["ci_high"]) == pytest.approx((low, high))


def test_interaction_of_unpaired_seeds_is_welch():
    cond_base, cond_head = {"1": 0.7, "2": 0.71, "3": 0.69}, {"1": 0.705, "2": 0.72, "3": 0.69}
    plain_base, plain_head = {"7": 0.8, "8": 0.81, "9": 0.8}, {"7": 0.79, "8": 0.805, "9": 0.78}
    result = interaction(cond_head, cond_base, plain_head, plain_base)
    a, b = [0.005, 0.01, 0.0], [-0.01, -0.005, -0.02]
    assert not result["paired"]
    assert result["mean"] == pytest.approx(np.mean(a) - np.mean(b))
    assert result["p"] == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)


def _curve(x):
    return 0.8 - 0.05 * (x - math.log(0.01)) ** 2  # a peak at lr = 0.01


def test_shift_fit_recovers_known_lr_shifts():
    lrs = [0.01 * 2 ** (k / 2) for k in range(-6, 6)]  # sqrt(2)-spaced, 12 rates
    rng = np.random.default_rng(0)
    curves = {}
    for head, c in (("sigmoid_bce", 1.0), ("tanh_mse", 0.5), ("sigmoid_mse", 2.0)):
        curves[head] = {
            str(seed): {lr: _curve(math.log(lr) - math.log(c)) + rng.normal(0, 0.002) for lr in lrs}
            for seed in range(3)
        }
    fitted = fit_shifts(curves, "sigmoid_bce", resamples=50)
    assert fitted["tanh_mse"]["shift"] == pytest.approx(0.5, rel=0.05)
    assert fitted["sigmoid_mse"]["shift"] == pytest.approx(2.0, rel=0.05)
    for head, c in (("tanh_mse", 0.5), ("sigmoid_mse", 2.0)):
        assert fitted[head]["ci_low"] <= c <= fitted[head]["ci_high"]
        assert fitted[head]["ci_high"] / fitted[head]["ci_low"] < 1.3  # three seeds pin it down
    assert fit_shifts({"tanh_mse": curves["tanh_mse"]}, "sigmoid_bce") == {}


# --- boundary IoU and clDice on masks known by hand ----------------------------------------------------------


def square(top: int, left: int, size: int = 4, shape=(8, 8)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[top : top + size, left : left + size] = True
    return m


def test_boundary_band_is_the_inner_ring():
    band = boundary_band(square(2, 2), width=1)
    assert band.sum() == 12  # a 4x4 square minus its 2x2 inside
    assert not band[3:5, 3:5].any() and band[2, 2:6].all()
    assert boundary_band(square(0, 0), width=1)[0, :4].all()  # the image border is a contour too
    assert boundary_band(square(2, 2), width=2).sum() == 16  # two px deep: all of a 4x4


def test_boundary_iou_of_a_one_pixel_shift():
    assert boundary_counts(square(2, 2), square(2, 2)) == (12, 12)
    # rings of cols 2-5 and 3-6 share the top and bottom rows' cols 3-5: 6 px; union 12 + 12 - 6 = 18
    assert boundary_counts(square(2, 3), square(2, 2)) == (6, 18)
    counts = ShapeCounts()
    counts.update(square(2, 3), square(2, 2))
    assert counts.boundary_iou() == pytest.approx(1 / 3)  # mask IoU would be 12 / 20


def line(row: int, start: int, stop: int, shape=(8, 12)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[row, start:stop] = True
    return m


def test_a_thin_line_is_its_own_skeleton():
    assert (skeleton(line(3, 1, 11)) == line(3, 1, 11)).all()
    assert skeleton(square(2, 2)).sum() < 16  # a blob's skeleton is thinner than the blob


def test_cldice_by_hand():
    truth = line(3, 1, 11)  # 10 px
    assert cldice_counts(truth, truth) == (10, 10, 10, 10)
    half = line(3, 1, 6)  # 5 px: topology precision 5/5, sensitivity 5/10, clDice 2 * 1 * 0.5 / 1.5
    counts = ShapeCounts()
    counts.update(half, truth)
    assert counts.cldice() == pytest.approx(2 / 3)
    empty = ShapeCounts()
    empty.update(np.zeros_like(truth), truth)
    assert empty.cldice() == 0.0  # all background finds no line
    nothing = ShapeCounts()
    nothing.update(np.zeros_like(truth), np.zeros_like(truth))
    assert math.isnan(nothing.cldice()) and math.isnan(nothing.boundary_iou())
