"""The regime arms' schedule criteria (docs/results/regimes/preregistration.md), read per seed from metrics.csv.

A long run is judged by its curves, not only by its end: did val IoU plateau (convergence), did training IoU on
noisy labels keep rising after clean val IoU peaked (memorisation), did the best epoch come before the last
(overfitting, what the best checkpoint hides and `last/...` shows)? Each answer is a per-seed fact with its
numbers; the report counts them per head and regime.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

PLATEAU_WITHIN = 0.005  # val IoU over the last third of validations moves by less than this: a plateau


@dataclass(frozen=True)
class Criteria:
    seed: str
    validations: int
    peak_epoch: int
    peak_val: float
    last_val: float
    late_range: float  # max - min of val IoU over the last third of validations
    train_at_peak: float  # train IoU (on the training labels, noisy where they are) in the val peak's epoch
    train_last: float

    @property
    def plateaued(self) -> bool:
        return self.late_range < PLATEAU_WITHIN

    @property
    def memorising(self) -> bool:
        """Training IoU rose after clean val IoU peaked, and val IoU ended below its peak."""
        return self.train_last > self.train_at_peak and self.last_val < self.peak_val

    @property
    def overfit(self) -> bool:
        """The best validation came before the last one: the best checkpoint is not the final weights."""
        return self.last_val < self.peak_val


def epoch_curves(metrics_csv: Path) -> tuple[dict[int, float], dict[int, float]]:
    """(epoch -> val/iou, epoch -> train/iou) from a run's CSV log; empty when it logged neither."""
    val, train = {}, {}
    if not metrics_csv.exists():
        return val, train
    with open(metrics_csv) as handle:
        for row in csv.DictReader(handle):
            if row.get("val/iou"):
                val[int(row["epoch"])] = float(row["val/iou"])
            if row.get("train/iou"):
                train[int(row["epoch"])] = float(row["train/iou"])
    return val, train


def criteria(seed: str, metrics_csv: Path) -> Criteria | None:
    """The seed's criteria; None without at least two validations and a training IoU (nothing to judge)."""
    val, train = epoch_curves(metrics_csv)
    if not train:
        return None
    # After fit, train.py validates the best checkpoint once more; Lightning logs that at epoch max_epochs, past
    # the last training epoch: not a point of the training curve.
    val = {epoch: value for epoch, value in val.items() if epoch <= max(train)}
    if len(val) < 2:
        return None
    epochs = sorted(val)
    peak_epoch = max(epochs, key=lambda e: (val[e], -e))  # the first epoch of the highest val IoU
    late = [val[e] for e in epochs[-max(2, math.ceil(len(epochs) / 3)) :]]
    return Criteria(
        seed=seed,
        validations=len(epochs),
        peak_epoch=peak_epoch,
        peak_val=val[peak_epoch],
        last_val=val[epochs[-1]],
        late_range=max(late) - min(late),
        train_at_peak=_at_or_before(train, peak_epoch),
        train_last=train[max(train)],
    )


def _at_or_before(curve: dict[int, float], epoch: int) -> float:
    earlier = [e for e in curve if e <= epoch]
    return curve[max(earlier)] if earlier else curve[min(curve)]
