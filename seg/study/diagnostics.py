"""Measurable forms of the hypotheses in docs/heads.md: calibration, and pixels that are wrong but no longer pushed.

`HeadDiagnostics` (enabled with `callbacks=diagnostics`) logs
- per validation epoch: `val/ece` (expected calibration error, 15 equal-width bins, torchmetrics) and
  `val/brier` (mean squared error of the head's probability against the {0,1} mask);
- on every `every_n_steps`-th training batch: `train/stuck_fraction` (pixels on the wrong side of the
  decision rule whose |dL/dz| is below `stuck_below`, as a fraction of all pixels), `train/stuck_of_wrong`
  (the same, as a fraction of the wrong pixels), `train/wrong_grad` (mean |dL/dz| of the wrong pixels) and
  `train/foreground_recall` (the fraction of the batch's foreground pixels predicted foreground: the atlas reads
  a run's time to escape the all-background solution from it, seg.study.failure).

Every statistic is over the pixels that count (the batch's `valid`: not ignored by the mask policy, not
padding), as the loss and the metrics are; a trimap's border or an eye's outside would otherwise bias them.

dL/dz is the gradient of the head's loss with respect to the decision logit of each pixel, scaled as if
the loss were a per-pixel sum (i.e. times the number of valid pixels), so it reads as docs/heads.md's formulas:
`p - y` for sigmoid_bce, `2 (a - t)(1 - a^2)` for tanh_mse. For two-channel heads the decision logit is
z1 - z0. It is recomputed from the step's detached logits: the training graph is not touched.
"""

from __future__ import annotations

import lightning as L
import torch
from torch import Tensor
from torchmetrics import MeanSquaredError
from torchmetrics.classification import BinaryCalibrationError

from seg.heads import Head


def decision_gradient(head: Head, logits: Tensor, mask: Tensor, valid: Tensor) -> Tensor:
    """(B, 1, H, W) dL/dz of each pixel's decision logit, in per-pixel units (see module docstring); 0 where
    the pixel does not count."""
    z = logits.detach().float().requires_grad_()
    (grad,) = torch.autograd.grad(head.loss(z, mask.float(), valid), z)
    grad = grad * valid.sum().clamp_min(1)  # undo the mean over valid pixels
    if grad.shape[1] == 2:  # d = z1 - z0; for a loss of d alone, dL/dd = (dL/dz1 - dL/dz0) / 2
        grad = (grad[:, 1:2] - grad[:, 0:1]) / 2
    return grad


def stuck_statistics(head: Head, logits: Tensor, mask: Tensor, valid: Tensor, stuck_below: float) -> dict[str, Tensor]:
    """Fractions of stuck pixels and the mean |dL/dz| of wrong pixels for one batch, over its valid pixels."""
    grad = decision_gradient(head, logits, mask, valid).abs()
    wrong = (head.predict(logits.detach().float()) != (mask > 0.5)) & valid
    stuck = wrong & (grad < stuck_below)
    n_wrong = wrong.sum()
    foreground = (mask > 0.5) & valid
    found = head.predict(logits.detach().float()) & foreground
    return {
        "stuck_fraction": stuck.sum() / valid.sum().clamp_min(1),
        "stuck_of_wrong": stuck.sum() / n_wrong.clamp_min(1),
        "wrong_grad": (grad * wrong).sum() / n_wrong.clamp_min(1),
        "foreground_recall": found.sum() / foreground.sum().clamp_min(1),
    }


class HeadDiagnostics(L.Callback):
    def __init__(self, *, n_bins: int = 15, stuck_below: float = 0.01, every_n_steps: int = 10) -> None:
        self.stuck_below = stuck_below
        self.every_n_steps = every_n_steps
        self.ece = BinaryCalibrationError(n_bins=n_bins, norm="l1")
        self.brier = MeanSquaredError()

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.ece.to(pl_module.device)
        self.brier.to(pl_module.device)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.every_n_steps:
            return
        with torch.enable_grad():
            stats = stuck_statistics(pl_module.head, outputs["logits"], batch["mask"], batch["valid"], self.stuck_below)
        for name, value in stats.items():
            pl_module.log(f"train/{name}", value, on_step=True, on_epoch=False)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        valid = batch["valid"]
        probability = pl_module.head.probability(outputs["logits"].float())[valid]  # (valid pixels,)
        target = batch["mask"][valid]
        self.ece.update(probability, target.long())
        self.brier.update(probability, target)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        # compute() syncs across processes; every rank logs the same value.
        pl_module.log("val/ece", self.ece.compute(), sync_dist=False)
        pl_module.log("val/brier", self.brier.compute(), sync_dist=False)
        self.ece.reset()
        self.brier.reset()
