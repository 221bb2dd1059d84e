"""Calibration: how far the head's probabilities are from the frequencies they predict, and temperature scaling.

Temperature scaling (Guo et al. 2017) divides the logit by one scalar T > 0 fitted on validation data by
negative log-likelihood. Every head here has p = sigmoid(a * d) for its decision logit d (a = 1, or 2 for
tanh_mse, d = z1 - z0 for softmax_ce), so scaling the head's log-odds logit(p) by 1 / T is scaling its logits:
p_T = sigmoid(logit(p) / T). For T > 0 the sign of the log-odds is unchanged, so the decision at p = 0.5
(z = 0) is the same pixel for pixel: IoU and Dice at 0.5 do not move, only the probabilities, ECE and Brier do.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor
from torchmetrics.functional.classification import binary_calibration_error

N_BINS = 15  # equal-width probability bins for ECE and the reliability diagram (as seg/study/diagnostics.py)
LOG_ODDS_LIMIT = 34.0  # |logit(p)| of float64 p one rounding step from 0 or 1; beyond it p says nothing more
SEARCH = (math.log(0.05), math.log(20.0))  # the range of log T searched


def log_odds(probability: Tensor) -> Tensor:
    """logit(p), clamped to +-LOG_ODDS_LIMIT; take p in float64, where it saturates only beyond |logit| ~ 37."""
    return torch.logit(probability.double()).clamp(-LOG_ODDS_LIMIT, LOG_ODDS_LIMIT)


def scaled(logit: Tensor, temperature: float) -> Tensor:
    """(N,) log-odds -> (N,) probability after temperature scaling."""
    return torch.sigmoid(logit.double() / temperature)


def nll(logit: Tensor, target: Tensor, temperature: float) -> float:
    """Mean binary cross-entropy of the scaled probabilities, from the log-odds (stable at any confidence)."""
    return float(torch.nn.functional.binary_cross_entropy_with_logits(logit.double() / temperature, target.double()))


def fit_temperature(logit: Tensor, target: Tensor, *, steps: int = 60) -> float:
    """The T > 0 of least NLL: golden-section search over log T in SEARCH (the NLL is convex in 1 / T)."""
    low, high = SEARCH
    ratio = (math.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = nll(logit, target, math.exp(a)), nll(logit, target, math.exp(b))
    for _ in range(steps):
        if fa <= fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = nll(logit, target, math.exp(a))
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = nll(logit, target, math.exp(b))
    return math.exp((low + high) / 2)


def ece(probability: Tensor, target: Tensor) -> float:
    """Expected calibration error over N_BINS equal-width bins (torchmetrics' binary ECE, l1)."""
    return float(binary_calibration_error(probability.float(), target.long(), n_bins=N_BINS, norm="l1"))


def brier(probability: Tensor, target: Tensor) -> float:
    """Mean squared error of the probability against the {0, 1} truth."""
    return float(((probability.double() - target.double()) ** 2).mean())


def reliability(probability: Tensor, target: Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bin of N_BINS: mean predicted probability, observed foreground frequency, pixel count (NaN: empty bin)."""
    bins = torch.clamp((probability.double() * N_BINS).long(), max=N_BINS - 1)
    count = torch.bincount(bins, minlength=N_BINS).double()
    mean_p = torch.bincount(bins, weights=probability.double(), minlength=N_BINS) / count
    frequency = torch.bincount(bins, weights=target.double(), minlength=N_BINS) / count
    return mean_p.numpy(), frequency.numpy(), count.numpy()


def reliability_figure(curves: dict[str, tuple[Tensor, Tensor]], title: str) -> Figure:
    """A reliability diagram: observed foreground frequency against predicted probability, one line per entry of
    `curves` (label -> (probability, target)), with the pixels per bin below on a log scale."""
    figure = Figure(figsize=(5, 6), layout="constrained")
    top, bottom = figure.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    top.plot([0, 1], [0, 1], color="grey", linestyle=":", label="calibrated")
    width = 1 / N_BINS
    for offset, (label, (probability, target)) in enumerate(curves.items()):
        mean_p, frequency, count = reliability(probability, target)
        filled = count > 0
        top.plot(mean_p[filled], frequency[filled], marker="o", label=f"{label}: ECE {ece(probability, target):.4f}")
        centres = (np.arange(N_BINS) + 0.25 + 0.5 * offset / max(len(curves) - 1, 1)) * width
        bottom.bar(centres, count, width=width / max(len(curves), 1), label=label)
    top.set(ylabel="observed foreground frequency", title=title, xlim=(0, 1), ylim=(0, 1))
    top.legend(loc="upper left", fontsize="small")
    bottom.set(xlabel="predicted foreground probability", ylabel="pixels", yscale="log")
    return figure
