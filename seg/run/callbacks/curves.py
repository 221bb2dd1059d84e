"""The learning curves of a run as one picture, curves.png: a panel per quantity (loss, iou, dice), against the step."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn
from matplotlib.figure import Figure


class LearningCurves(L.Callback):
    """Records metrics as the module logs them and draws them at the end of fit.

    It reads `trainer.callback_metrics` itself rather than a logger's file, so the picture does not depend on which
    loggers run (fast_dev_run has none). `train_metrics` must be logged every step (read after each training
    batch), `val_metrics` once per validation (read after each). Metrics sharing the part after "/" share a panel:
    train/loss with val/loss.
    """

    def __init__(self, *, path: str | Path, train_metrics: list[str], val_metrics: list[str]) -> None:
        super().__init__()
        self.path = Path(path)
        self.train_metrics = list(train_metrics)
        self.val_metrics = list(val_metrics)
        self.history: dict[str, list[tuple[int, float]]] = defaultdict(list)  # name -> [(global step, value)]

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args) -> None:
        self._record(trainer, self.train_metrics)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Epoch values of validation metrics are computed before this hook, not before on_validation_epoch_end.
        if not trainer.sanity_checking and trainer.state.fn == TrainerFn.FITTING:
            self._record(trainer, self.val_metrics)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero and self.history:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            draw(self.values()).savefig(self.path)

    def values(self) -> dict[str, list[tuple[int, float]]]:
        return {name: [(step, float(value)) for step, value in points] for name, points in self.history.items()}

    def _record(self, trainer: L.Trainer, names: list[str]) -> None:
        # The tensor, not float(tensor): float() after every training batch would wait for the GPU each step.
        for name in names:
            if name in trainer.callback_metrics:
                self.history[name].append((trainer.global_step, trainer.callback_metrics[name].detach().clone()))


def draw(history: dict[str, list[tuple[int, float]]]) -> Figure:
    """One panel per quantity; Figure (not pyplot) renders with Agg and keeps no global state."""
    panels: dict[str, list[str]] = defaultdict(list)
    for name in history:
        panels[name.rsplit("/", 1)[-1]].append(name)
    figure = Figure(figsize=(4.5 * len(panels), 3.5), layout="constrained")
    for axes, (quantity, names) in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels.items(), strict=True):
        for name in names:
            steps, values = zip(*history[name], strict=True)
            axes.plot(steps, values, label=name, marker="o" if len(steps) < 30 else None)
        axes.set(title=quantity, xlabel="step")
        axes.grid(alpha=0.3)
        axes.legend()
    return figure
