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
    """Stops at the first NaN/inf training loss; no non-finite update ever reaches the weights.

    On the CPU the loss is checked before its backward pass at every step: reading it costs nothing there. On
    an accelerator reading it every step would be a device sync per step, so the check stays on the device: a
    step whose loss is not finite has its gradients zeroed before the optimizer runs (the update applied is
    finite), the first such step is remembered on the device, and the host reads that once every
    `check_every_n_steps` steps, before every checkpoint save (so no checkpoint holds a skipped step) and at the
    end of training, and then stops with the same message. `deferred` forces either behaviour (tests).
    The checkpoints written so far are left as they are: the message names the last one.
    """

    def __init__(self, *, check_every_n_steps: int = 50, deferred: bool | None = None) -> None:
        self.check_every_n_steps = check_every_n_steps
        self.deferred = deferred
        self._bad: Tensor | None = None  # this step's loss was not finite (device bool)
        self._first_bad: Tensor | None = None  # the first such step, or -1 (device int)

    def _defers(self, pl_module: L.LightningModule) -> bool:
        return self.deferred if self.deferred is not None else pl_module.device.type != "cpu"

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: Tensor) -> None:
        if not self._defers(pl_module):
            if not torch.isfinite(loss).all():
                self._stop(trainer, pl_module, f"train/loss is {loss.item()} at step {trainer.global_step}")
            return
        self._bad = ~torch.isfinite(loss.detach()).all()
        step = torch.full((), trainer.global_step, device=loss.device)
        first = self._first_bad if self._first_bad is not None else torch.full_like(step, -1)
        self._first_bad = torch.where(self._bad & (first < 0), step, first)

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer) -> None:
        if self._bad is None:
            return
        keep = (~self._bad).to(torch.float32)
        for group in optimizer.param_groups:
            for parameter in group["params"]:
                if parameter.grad is not None:  # NaN * 0 is NaN: clear non-finite values first
                    parameter.grad.nan_to_num_(0.0, 0.0, 0.0).mul_(keep.to(parameter.grad.dtype))
        self._bad = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        if self._first_bad is not None and trainer.global_step % self.check_every_n_steps == 0:
            self._check(trainer, pl_module)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self._check(trainer, pl_module)  # raised while the checkpoint is assembled: nothing is written

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer, pl_module)

    def _check(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._first_bad is not None and int(self._first_bad) >= 0:  # the one host read
            step = int(self._first_bad)
            self._first_bad = None
            self._stop(trainer, pl_module, f"train/loss was not finite at step {step} (its update was skipped)")

    def _stop(self, trainer: L.Trainer, pl_module: L.LightningModule, what: str) -> None:
        head = getattr(getattr(pl_module, "head", None), "name", "?")
        raise TrainingDiverged(
            f"{what} (epoch {trainer.current_epoch}, head {head}); training stopped, last good checkpoint:"
            f" {_last_checkpoint(trainer)}; lower optimizer.lr or set trainer.gradient_clip_val"
        )


def _last_checkpoint(trainer: L.Trainer) -> str:
    saved = [
        Path(p)
        for callback in trainer.callbacks
        for p in (getattr(callback, "path", None), getattr(callback, "last_model_path", None))
        if isinstance(callback, (ModelCheckpoint, ResumableCheckpoint)) and p and Path(p).exists()
    ]
    return str(max(saved, key=lambda p: p.stat().st_mtime)) if saved else "none saved yet"
