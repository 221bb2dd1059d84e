"""Dataset-level IoU and Dice of the foreground class.

Both accumulate true/false positives over every pixel of a split (micro average): one image with a huge object
does not count more than its pixels, and an empty image counts nothing rather than NaN. Ignored pixels (mask policy
`ignore`, padding) count nowhere. They are fed the head's bool decision and the {0,1} mask as integers, so no
metric ever has to guess whether it got logits or probabilities (torchmetrics' binary metrics apply a sigmoid to
anything outside [0, 1], e.g. raw tanh output, and reject {-1, 1} targets).

The counts are masked sums, not torchmetrics' `ignore_index`: that one drops ignored pixels by boolean indexing,
a tensor whose size depends on the data, so every training step would wait for the device to say how many.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric, MetricCollection

from seg.heads import IGNORE_TARGET as IGNORED  # one ignore value for losses and metrics: pixels that count nowhere


class _ForegroundCounts(Metric):
    """True positives, false positives and false negatives of the foreground over the pixels that count."""

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self) -> None:
        super().__init__()
        for name in ("tp", "fp", "fn"):
            self.add_state(name, default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, prediction: Tensor, target: Tensor) -> None:
        """`prediction` {0, 1} and `target` {0, 1, IGNORED}, same shape: the pair `as_metric_input` makes."""
        counted = target != IGNORED
        predicted = (prediction == 1) & counted
        foreground = target == 1
        self.tp += (predicted & foreground).sum()
        self.fp += (predicted & ~foreground).sum()
        self.fn += (~predicted & foreground & counted).sum()


def _ratio(numerator: Tensor, denominator: Tensor) -> Tensor:
    """numerator / denominator, 0 where nothing counted (as torchmetrics' zero_division=0)."""
    return torch.where(denominator > 0, numerator / denominator.clamp(min=1), torch.zeros((), dtype=torch.float32))


class ForegroundIoU(_ForegroundCounts):
    def compute(self) -> Tensor:
        return _ratio(self.tp.float(), (self.tp + self.fp + self.fn).float())


class ForegroundDice(_ForegroundCounts):
    def compute(self) -> Tensor:
        return _ratio(2 * self.tp.float(), (2 * self.tp + self.fp + self.fn).float())


def segmentation_metrics(stage: str) -> MetricCollection:
    """`{stage}/iou` and `{stage}/dice` (Dice = F1 of the foreground class)."""
    # One compute group, named here: MetricCollection would otherwise find it by comparing the states after the
    # first update, a host read.
    return MetricCollection(
        {"iou": ForegroundIoU(), "dice": ForegroundDice()}, prefix=f"{stage}/", compute_groups=[["iou", "dice"]]
    )


def as_metric_input(prediction: Tensor, mask: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """bool decision and float {0,1} mask, (B, 1, H, W) each, as the integer pair the metrics expect.

    Pixels outside `valid` (ignored mask values, padding) get the target IGNORED: counted nowhere.
    """
    return prediction.long(), mask.long().masked_fill(~valid, IGNORED)
