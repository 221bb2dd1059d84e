"""The operating point: the probability at which a pixel becomes foreground, and picking it on validation data.

Every metric of training is taken at 0.5. Two heads whose probabilities are calibrated differently can differ
at 0.5 and not at each one's own best threshold, so eval.py and predict.py take `threshold=` (a probability,
or `val`: the IoU-best one on the validation split, stored with the run and in its checkpoint).

`ThresholdCounts` counts a split's valid pixels once per grid threshold in one pass and in constant memory,
so the IoU and Dice at every grid threshold are exact, not estimated from a sample.
"""

from __future__ import annotations

import torch
from torch import Tensor

from seg.errors import UserError

GRID = torch.arange(1, 100, dtype=torch.float64) / 100  # 0.01 ... 0.99; holds 0.5 exactly
PICKED = "val"  # threshold=val: the validation-picked threshold


class ThresholdCounts:
    """Foreground and background pixels with probability >= t, for every t of GRID, accumulated over batches."""

    def __init__(self) -> None:
        self.foreground = torch.zeros(len(GRID) + 1, dtype=torch.float64)  # by bin: number of grid values <= p
        self.background = torch.zeros(len(GRID) + 1, dtype=torch.float64)

    def update(self, probability: Tensor, mask: Tensor, valid: Tensor) -> None:
        """(B, 1, H, W) probability, {0, 1} mask and bool valid: only valid pixels count."""
        # In float32, as eval.py and predict.py compare a float32 probability with the threshold.
        bins = torch.bucketize(probability[valid].float().cpu(), GRID.float(), right=True)  # (N,) in [0, len(GRID)]
        truth = mask[valid].bool().cpu()
        self.foreground += torch.bincount(bins[truth], minlength=len(GRID) + 1)
        self.background += torch.bincount(bins[~truth], minlength=len(GRID) + 1)

    def _at_or_above(self, counts: Tensor) -> Tensor:
        """(len(GRID),) pixels with p >= GRID[k]: those whose bin is above k."""
        return counts.flip(0).cumsum(0).flip(0)[1:]

    def iou(self) -> Tensor:
        """(len(GRID),) dataset-level IoU at each grid threshold (1.0 where nothing is to find or found)."""
        tp, fp = self._at_or_above(self.foreground), self._at_or_above(self.background)
        union = fp + self.foreground.sum()
        return torch.where(union > 0, tp / union.clamp(min=1), 1.0)

    def dice(self) -> Tensor:
        tp, fp = self._at_or_above(self.foreground), self._at_or_above(self.background)
        denominator = tp + fp + self.foreground.sum()
        return torch.where(denominator > 0, 2 * tp / denominator.clamp(min=1), 1.0)

    def at(self, threshold: float) -> dict[str, float]:
        """IoU and Dice at a grid threshold."""
        k = grid_index(threshold)
        return {"iou": float(self.iou()[k]), "dice": float(self.dice()[k])}

    def best_threshold(self) -> float:
        """The grid threshold of highest IoU; of equals, the one nearest 0.5 (the untuned default)."""
        iou = self.iou()
        best = iou == iou.max()
        distance = torch.where(best, (GRID - 0.5).abs(), torch.inf)
        return float(GRID[int(distance.argmin())])


def grid_index(threshold: float) -> int:
    close = (GRID - threshold).abs()
    if float(close.min()) > 1e-9:
        raise ValueError(f"{threshold} is not a grid threshold")
    return int(close.argmin())


def threshold_value(spec: object, stored: float | None, key: str = "threshold") -> float:
    """`threshold=` as a probability in (0, 1]: a number, or `val` read from the checkpoint (`stored`)."""
    if spec == PICKED:
        if stored is None:
            raise UserError(
                f"{key}=val: this checkpoint holds no validation-picked threshold (trained before it was stored,"
                " or without a best checkpoint); pass a number, e.g. the val_threshold that eval.py prints"
            )
        return float(stored)
    try:
        value = float(spec)
    except (TypeError, ValueError):
        value = None
    if value is None or isinstance(spec, bool) or not 0 < value <= 1:
        raise UserError(f"{key}={spec}: must be a probability in (0, 1] or val (the IoU-best on the validation split)")
    return value
