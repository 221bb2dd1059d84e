"""The tests the head atlas decides its claims with, on per-seed numbers.

Everything here takes plain numbers (per-seed values, counts) and returns plain dicts, so each test can be checked
against scipy or a hand computation (tests/test_atlas.py). The declared constants (the smallest effect of interest,
the collapse definition) are those of docs/results/atlas/preregistration.md.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from seg.study.compare import paired_comparison

ALPHA = 0.05
MARGIN = 0.005  # smallest effect of interest in test IoU: a |Δ| below it is "no practical difference"
COLLAPSE_BELOW = 0.05  # a run whose test IoU is below this found (almost) nothing: its own endpoint


def excludes_zero(result: dict) -> bool:
    """The one verdict rule of the studies: both the bootstrap and the t interval lie on one side of 0."""
    lows, highs = (result["ci_low"], result["t_ci_low"]), (result["ci_high"], result["t_ci_high"])
    return all(low > 0 for low in lows) or all(high < 0 for high in highs)


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjustment: the k-th smallest of m p values times (m - k + 1), kept monotone, capped at 1.

    Controls the family-wise error rate at alpha over all m tests without assuming they are independent.
    """
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted, running = [math.nan] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def tost(differences, margin: float = MARGIN) -> dict:
    """Two one-sided paired t tests of |mean Δ| < margin (equivalence). p = the larger of the two one-sided p.

    Equivalent at level alpha exactly when the (1 - 2 alpha) t interval lies inside (-margin, margin).
    """
    d = np.asarray(differences, dtype=float)
    n = len(d)
    if n < 2 or np.ptp(d) == 0:
        return {"margin": margin, "p": math.nan, "ci90_low": math.nan, "ci90_high": math.nan, "equivalent": False}
    mean, se, df = float(d.mean()), float(stats.sem(d)), n - 1
    p_lower = float(stats.t.sf((mean + margin) / se, df))  # H0: mean <= -margin
    p_upper = float(stats.t.cdf((mean - margin) / se, df))  # H0: mean >= +margin
    p = max(p_lower, p_upper)
    low, high = stats.t.interval(1 - 2 * ALPHA, df, loc=mean, scale=se)
    return {"margin": margin, "p": p, "ci90_low": float(low), "ci90_high": float(high), "equivalent": p < ALPHA}


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval of a rate k / n; (nan, nan) for n = 0."""
    if n == 0:
        return (math.nan, math.nan)
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
    return (float(ci.low), float(ci.high))


def rate_comparison(k_head: int, n_head: int, k_base: int, n_base: int, alternative: str = "two-sided") -> dict:
    """Two rates (e.g. collapses per seed): each with its exact interval, Fisher's exact and Barnard's test.

    `alternative` is about the head's rate against the base's ("greater": the head fails more often).
    """
    table = [[k_head, n_head - k_head], [k_base, n_base - k_base]]
    out = {"k": k_head, "n": n_head, "k_other": k_base, "n_other": n_base}
    out["rate_ci"], out["rate_other_ci"] = clopper_pearson(k_head, n_head), clopper_pearson(k_base, n_base)
    if n_head == 0 or n_base == 0 or (k_head + k_base) in (0, n_head + n_base):
        out["fisher_p"] = out["barnard_p"] = 1.0 if n_head and n_base else math.nan  # nothing (or all) failed
        return out
    out["fisher_p"] = float(stats.fisher_exact(table, alternative=alternative).pvalue)
    out["barnard_p"] = float(stats.barnard_exact(table, alternative=alternative).pvalue)
    return out


def collapse_endpoint(head: dict[str, float], base: dict[str, float], below: float = COLLAPSE_BELOW) -> dict:
    """Collapse (a value below `below`) as its own endpoint, and the paired Δ over the seeds where neither side
    collapsed ("Δ given success"), so one all-background seed is not averaged into a t test as a number."""
    collapsed = {side: {s for s, v in values.items() if v < below} for side, values in (("h", head), ("b", base))}
    out = rate_comparison(len(collapsed["h"]), len(head), len(collapsed["b"]), len(base))
    out["below"] = below
    out["collapsed_seeds"] = sorted(collapsed["h"]), sorted(collapsed["b"])
    kept = set(head) & set(base) - collapsed["h"] - collapsed["b"]
    out["given_success"] = paired_comparison({s: head[s] for s in kept}, {s: base[s] for s in kept})
    return out


def interaction(
    condition_head: dict[str, float],
    condition_base: dict[str, float],
    plain_head: dict[str, float],
    plain_base: dict[str, float],
) -> dict:
    """(condition Δ) − (plain Δ), Δ = head − base per seed: what a hypothesis about a condition predicts.

    Paired by seed when the same seeds ran both (a one-sample t on the per-seed contrasts); otherwise the two
    Δ means are independent and the interval is Welch's.
    """
    # In seed order, not a set's (which changes with each process's hash seed): the sums, and so the last bits of
    # every number below, are then the same on every rendering.
    cond = {s: condition_head[s] - condition_base[s] for s in sorted(set(condition_head) & set(condition_base))}
    plain = {s: plain_head[s] - plain_base[s] for s in sorted(set(plain_head) & set(plain_base))}
    common = sorted(set(cond) & set(plain))
    if len(common) >= 2 and len(common) == len(cond) == len(plain):
        contrast = np.array([cond[s] - plain[s] for s in common])
        mean, se, df = float(contrast.mean()), float(stats.sem(contrast)), len(contrast) - 1
        out = {"paired": True, "n": len(common)}
    else:
        a, b = np.array(list(cond.values())), np.array(list(plain.values()))
        if len(a) < 2 or len(b) < 2:
            return {"paired": False, "n": min(len(a), len(b)), "mean": math.nan, "ci_low": math.nan,
                    "ci_high": math.nan, "p": math.nan}  # fmt: skip
        va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
        mean, se = float(a.mean() - b.mean()), float(math.sqrt(va + vb))
        df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if va + vb > 0 else math.inf
        out = {"paired": False, "n": min(len(a), len(b))}
    if se == 0:
        return {**out, "mean": mean, "ci_low": math.nan, "ci_high": math.nan, "p": math.nan}
    low, high = stats.t.interval(0.95, df, loc=mean, scale=se)
    p = float(2 * stats.t.sf(abs(mean) / se, df))
    return {**out, "mean": mean, "ci_low": float(low), "ci_high": float(high), "p": p}
