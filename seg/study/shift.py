"""The learning-rate shift between heads: one shared IoU-vs-log-lr curve, moved sideways per head.

val IoU of head h at learning rate lr is modelled as f(log lr - log c_h), with f one polynomial in log lr shared by
every head and c = 1 for the baseline head. c_h is then the lr ratio at which head h reaches the baseline's curve:
c_h = 0.5 means the head does at lr / 2 what the baseline does at lr. The scale calculus of
docs/results/atlas/preregistration.md predicts c per head and optimizer; the bootstrap over selection seeds
gives its interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from scipy.optimize import least_squares

DEGREE = 3  # a cubic in log lr: a rise, a peak and a fall over a 16x grid, with few parameters to share
RESAMPLES = 400

Curves = Mapping[str, Mapping[str, Mapping[float, float]]]  # head -> seed -> {lr: val IoU}


def _points(curves: Curves, heads: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    head_index, x, y = [], [], []
    for i, head in enumerate(heads):
        for by_lr in curves[head].values():
            for lr, value in by_lr.items():
                head_index.append(i)
                x.append(math.log(lr))
                y.append(value)
    return np.array(head_index), np.array(x), np.array(y)


def _fit(head_index: np.ndarray, x: np.ndarray, y: np.ndarray, n_heads: int, degree: int) -> np.ndarray:
    """log shifts of heads 1.. (head 0 fixed at 0), by least squares over shifts and the shared polynomial."""
    center = float(x.mean())

    def residuals(params: np.ndarray) -> np.ndarray:
        shifts = np.concatenate([[0.0], params[: n_heads - 1]])
        coefficients = params[n_heads - 1 :]
        return np.polyval(coefficients, x - shifts[head_index] - center) - y

    start_poly = np.polyfit(x - center, y, degree)  # no shifts: a fair start on a common grid
    start = np.concatenate([np.zeros(n_heads - 1), start_poly])
    return least_squares(residuals, start).x[: n_heads - 1]


def fit_shifts(curves: Curves, baseline: str, *, degree: int = DEGREE, resamples: int = RESAMPLES, seed: int = 0):
    """head -> {"shift": c, "ci_low", "ci_high", "n_seeds"}: the fitted lr ratio of each head to `baseline` with a
    95% percentile bootstrap interval, resampling each head's seeds (whole curves) with replacement."""
    heads = [baseline, *sorted(h for h in curves if h != baseline)]
    if baseline not in curves or len(heads) < 2:
        return {}
    head_index, x, y = _points(curves, heads)
    estimate = np.exp(_fit(head_index, x, y, len(heads), degree))
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        resampled = {}
        for head in heads:
            seeds = list(curves[head])
            picked = rng.choice(len(seeds), size=len(seeds), replace=True)
            resampled[head] = {f"{k}": curves[head][seeds[j]] for k, j in enumerate(picked)}
        draws.append(np.exp(_fit(*_points(resampled, heads), len(heads), degree)))
    draws = np.array(draws)  # (resamples, heads - 1)
    lows, highs = np.percentile(draws, [2.5, 97.5], axis=0)
    return {
        head: {
            "shift": float(estimate[i]),
            "ci_low": float(lows[i]),
            "ci_high": float(highs[i]),
            "n_seeds": len(curves[head]),
        }
        for i, head in enumerate(heads[1:])
    }
