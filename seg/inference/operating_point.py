"""One pass over a split's probabilities: the counts behind IoU/Dice at every threshold, and a sample for the
threshold-free numbers (average precision, calibration). train.py's end of run and eval.py both use it.

At the end of a run (`measure_operating_point`) the best checkpoint's validation pass picks the IoU-best
threshold and fits the temperature; the test pass is scored at 0.5 (summary.json's `test/iou`, from
`trainer.test`), at the validation-picked threshold, threshold-free (AP), and for calibration before and after
temperature scaling, drawn as reliability.png. Only valid pixels count (not ignored, not padding).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from torchmetrics.functional.classification import binary_average_precision

from seg.heads import Head
from seg.inference.calibration import brier, ece, fit_temperature, log_odds, reliability_figure, scaled
from seg.inference.threshold import ThresholdCounts
from seg.inference.tta import flip_averaged

MAX_SAMPLED = 2**24  # valid pixels kept per split for AP and calibration (~80 MB); more: every k-th is kept
RELIABILITY = "reliability.png"  # in the run directory
BatchFn = Callable[[Tensor, dict[str, Tensor]], None]  # (B, 1, H, W) float32 probability, the batch on the device


@dataclass
class SplitScores:
    counts: ThresholdCounts  # every valid pixel: exact IoU and Dice at each grid threshold
    log_odds: Tensor  # (N,) float32 logit(p) of valid pixels (all, or every k-th beyond MAX_SAMPLED)
    target: Tensor  # (N,) bool truth of the same pixels

    def probability(self, temperature: float = 1.0) -> Tensor:
        return scaled(self.log_odds, temperature)  # (N,) float64


def probabilities(net: nn.Module, head: Head, image: Tensor, *, tta: bool = False) -> tuple[Tensor, Tensor]:
    """(B, C, H, W) normalized image -> (B, 1, H, W) probability twice: float32 as training's metrics take it
    (so that decisions at 0.5 are `head.predict`'s, bit for bit) and float64 for the log-odds of calibration."""

    def both(x: Tensor) -> Tensor:
        logits = net(x)
        return torch.cat([head.probability(logits).double(), head.probability(logits.double())], dim=1)

    pair = flip_averaged(both, image) if tta else both(image)
    return pair[:, :1].float(), pair[:, 1:]


@torch.inference_mode()
def score_split(
    net: nn.Module, head: Head, loader: DataLoader, device, *, tta: bool = False, on_batch: BatchFn | None = None
) -> SplitScores:
    """One pass over `loader`; `on_batch` sees each batch's probability (eval.py's decisions and per-image IoU)."""
    counts, sampled, targets, every = ThresholdCounts(), [], [], None
    for batch in loader:
        batch = {key: value.to(device) for key, value in batch.items()}
        valid = batch["valid"]  # (B, 1, H, W) bool
        probability, precise = probabilities(net, head, batch["image"], tta=tta)
        counts.update(probability, batch["mask"], valid)
        if every is None:  # the first batch's valid pixels times the batches: about the split's
            every = max(1, math.ceil(int(valid.sum()) * len(loader) / MAX_SAMPLED))
        sampled.append(log_odds(precise[valid][::every]).float().cpu())
        targets.append(batch["mask"][valid][::every].bool().cpu())
        if on_batch is not None:
            on_batch(probability, batch)
    return SplitScores(counts=counts, log_odds=torch.cat(sampled), target=torch.cat(targets))


def average_precision(probability: Tensor, target: Tensor) -> float:
    """Threshold-free: the area under the precision-recall curve over every pixel's probability (torchmetrics)."""
    return float(binary_average_precision(probability, target.long(), thresholds=None))


def calibration_entries(scores: SplitScores, split: str, temperature: float | None) -> dict[str, float]:
    """`{split}/ap`, `/ece`, `/brier`, and with a temperature `/ece@temperature`, `/brier@temperature`."""
    p = scores.probability()
    entries = {f"{split}/ap": average_precision(p, scores.target), f"{split}/ece": ece(p, scores.target)}
    entries[f"{split}/brier"] = brier(p, scores.target)
    if temperature is not None:
        calibrated = scores.probability(temperature)
        entries[f"{split}/ece@temperature"] = ece(calibrated, scores.target)
        entries[f"{split}/brier@temperature"] = brier(calibrated, scores.target)
    return entries


def measure_operating_point(
    net: nn.Module, head: Head, loaders: dict[str, DataLoader], device, run_dir: Path | None, *, at_half: bool = False
) -> dict[str, float]:
    """summary.json's threshold and calibration entries; reliability.png in `run_dir` (None: not drawn).
    `at_half`: also `val/iou`, `val/dice`, `test/iou`, `test/dice` at 0.5, from the same exact counts (for weights
    that `trainer.test` did not score: train.py's `evaluate_last`)."""
    was_training = net.training
    net.eval()
    val, test = (score_split(net, head, loaders[split], device) for split in ("val", "test"))
    net.train(was_training)
    half = (
        {
            f"{name}/{metric}": scores.counts.at(0.5)[metric]
            for name, scores in (("val", val), ("test", test))
            for metric in ("iou", "dice")
        }
        if at_half
        else {}
    )
    threshold = val.counts.best_threshold()
    temperature = fit_temperature(val.log_odds, val.target)
    picked = test.counts.at(threshold)
    entries = {
        "val_threshold": threshold,
        "val/iou@val_threshold": val.counts.at(threshold)["iou"],
        "test/iou@val_threshold": picked["iou"],
        "test/dice@val_threshold": picked["dice"],
        "temperature": temperature,
        **calibration_entries(test, "test", temperature),
        **half,
    }
    if run_dir is not None:
        draw_reliability(test, temperature, run_dir / RELIABILITY, title=f"{head.name}: test pixels")
    return entries


def draw_reliability(scores: SplitScores, temperature: float, path: Path, *, title: str) -> None:
    curves = {
        "as trained": (scores.probability(), scores.target),
        f"T = {temperature:.3f}": (scores.probability(temperature), scores.target),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    reliability_figure(curves, title).savefig(path, dpi=100)
