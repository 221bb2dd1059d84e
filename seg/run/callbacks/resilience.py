"""Callbacks that keep a run resumable and stop it cleanly: fresh last.ckpt, graceful signals, NaN guard."""

from __future__ import annotations

import signal
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch import Tensor

from seg.errors import Interrupted, TrainingDiverged

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class ResumableCheckpoint(Callback):
    """Keeps `dirpath/last.ckpt` fresh: every `every_n_train_steps` steps, and on SIGINT/SIGTERM.

    ModelCheckpoint(save_last=True) already writes last.ckpt at each epoch's end; this adds mid-epoch
    saves (a SIGKILL loses at most `every_n_train_steps` steps) and the save on a signal. Lightning 2.6
    does neither by itself: Ctrl+C raises KeyboardInterrupt wherever the process is (possibly inside an
    optimizer step), and SIGTERM only stops at the end of the epoch, without a checkpoint. Here a signal
    is noted and acted on after the current training batch, where the state is consistent: the checkpoint
    is the one a periodic save at that step would write, and resuming from it is exact. A signal during
    an epoch's last batch or its validation stops after the epoch-end save instead. A second Ctrl+C stops
    at once. A signal during the last epoch's validation lets the run finish.
    """

    def __init__(self, *, dirpath: str | Path, every_n_train_steps: int | None = None) -> None:
        self.path = Path(dirpath) / "last.ckpt"
        self.every_n_train_steps = every_n_train_steps
        self.received: int | None = None
        self._saved_step = -1
        self._previous_handlers: dict[int, object] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.received = None
        for signum in SIGNALS:
            self._previous_handlers[signum] = signal.getsignal(signum)
            signal.signal(signum, self._note)

    def _note(self, signum: int, frame) -> None:
        if self.received == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl+C: the user does not want to wait for the batch
        self.received = signum

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        # A signal noted during the previous epoch's last batch or its validation: that epoch's end already
        # wrote last.ckpt (ModelCheckpoint save_last), the point Lightning resumes from exactly. Saving at the
        # epoch's last batch or in on_train_epoch_end instead gave a resumed run a different best.ckpt.
        if self.received is not None and batch_idx == 0:
            self._stop(trainer)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        if batch_idx + 1 >= trainer.num_training_batches:
            return  # the epoch-end checkpoint follows, after validation (see on_train_batch_start)
        if self.received is not None:
            trainer.save_checkpoint(self.path, weights_only=False)  # full state: resumable
            self._stop(trainer)
        step = trainer.global_step
        # step, not batch: with gradient accumulation several batches share a step; save once
        if self.every_n_train_steps and step % self.every_n_train_steps == 0 and step != self._saved_step:
            trainer.save_checkpoint(self.path, weights_only=False)  # full state: resumable
            self._saved_step = step

    def _stop(self, trainer: L.Trainer) -> None:
        name = signal.Signals(self.received).name
        saved = (
            f"saved {self.path}; continue with resume={self.path.parent.parent}"
            if self.path.exists()
            else "no checkpoint yet"
        )
        raise Interrupted(f"{name} at step {trainer.global_step}: {saved}", signum=self.received)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_handlers()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore_handlers()

    def _restore_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()


class StopOnNonFiniteLoss(Callback):
    """Stops at the first NaN/inf training loss, before its backward pass can write NaN into the weights.

    The checkpoints written so far are left as they are: the message names the last one.
    """

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: Tensor) -> None:
        if torch.isfinite(loss).all():
            return
        head = getattr(getattr(pl_module, "head", None), "name", "?")
        raise TrainingDiverged(
            f"train/loss is {loss.item()} at step {trainer.global_step} (epoch {trainer.current_epoch}, head {head});"
            f" training stopped, last good checkpoint: {_last_checkpoint(trainer)};"
            " lower optimizer.lr or set trainer.gradient_clip_val"
        )


def _last_checkpoint(trainer: L.Trainer) -> str:
    saved = [
        Path(p)
        for callback in trainer.callbacks
        for p in (getattr(callback, "path", None), getattr(callback, "last_model_path", None))
        if isinstance(callback, (ModelCheckpoint, ResumableCheckpoint)) and p and Path(p).exists()
    ]
    return str(max(saved, key=lambda p: p.stat().st_mtime)) if saved else "none saved yet"
