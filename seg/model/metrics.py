"""Dataset-level IoU and Dice of the foreground class.

Both are torchmetrics binary metrics that accumulate true/false positives over every pixel of a split
(micro average): one image with a huge object does not count more than its pixels, and an empty image
counts nothing rather than NaN. Ignored pixels (mask policy `ignore`, padding) count nowhere. They are fed the head's bool decision and the {0,1} mask as integers, so
torchmetrics never has to guess whether it got logits or probabilities (it would apply a sigmoid to
anything outside [0, 1], e.g. raw tanh output, and reject {-1, 1} targets).
"""

from __future__ import annotations

from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.classification import BinaryF1Score, BinaryJaccardIndex

from seg.heads import IGNORE_TARGET as IGNORED  # one ignore value for losses and metrics: pixels that count nowhere


def segmentation_metrics(stage: str) -> MetricCollection:
    """`{stage}/iou` and `{stage}/dice` (Dice = F1 of the foreground class)."""
    return MetricCollection(
        {
            "iou": BinaryJaccardIndex(ignore_index=IGNORED, validate_args=False),
            "dice": BinaryF1Score(ignore_index=IGNORED, validate_args=False),
        },
        prefix=f"{stage}/",
    )


def as_metric_input(prediction: Tensor, mask: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """bool decision and float {0,1} mask, (B, 1, H, W) each, as the integer pair the metrics expect.

    Pixels outside `valid` (ignored mask values, padding) get the target IGNORED: counted nowhere.
    """
    return prediction.long(), mask.long().masked_fill(~valid, IGNORED)
