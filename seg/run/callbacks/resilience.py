"""Callbacks that keep a run resumable and stop it cleanly: fresh last.ckpt, graceful signals, NaN guard."""

from __future__ import annotations

import signal
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, Checkpoint, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch import Tensor

from seg.errors import Interrupted, TrainingDiverged

SIGNALS = (signal.SIGINT,)  # SIGTERM: Lightning's handler in one process, this callback's under DDP


class ResumableCheckpoint(Checkpoint):
    """Writes `dirpath/last.ckpt`, the full training state a run resumes from: after `every_n_train_steps` steps
    without a save, at the end of training, and on SIGTERM or SIGINT.

    The step count runs from the last save (or the start), and is checked after every training batch and at each
    epoch's end, so a SIGKILL loses at most `every_n_train_steps` steps however long an epoch is, and an epoch of a
    few steps does not write ~135 MB each time (`null`: no periodic saves).

    In a single process SIGTERM is Lightning's (2.6): its handler notes the signal, and its loops raise `SIGTERMException` after the current training
    batch (and the validation that batch triggered), after the current validation batch, or at an epoch's end, then
    call every callback's `on_exception`. `OnExceptionCheckpoint` saves there on any exception; this saves there on
    SIGTERM only (a NaN stop or a failed batch leaves the last good last.ckpt), and not when the signal stopped a
    validation between its batches: that validation's metric sums are in no checkpoint, and the resumed run would
    finish it with the remaining batches only and take that epoch's best-checkpoint decision on them. Then the
    last.ckpt saved before stays, and the steps since run again on resume. Resuming gives the numbers of an
    uninterrupted run (tests/test_resume.py). train() turns the exception, a SystemExit that would exit with status
    0, into `Interrupted` (status 143).

    Under DDP SIGTERM is taken from Lightning too: its handler broadcasts from inside the signal handler, wherever
    each rank happens to be (a gradient all-reduce, a checkpoint's barrier), and each rank then stops at its own
    batch, so a scheduler's SIGTERM to every rank ends in a collective mismatch (Lightning-AI/pytorch-lightning
    #20806). Here a signal is only noted; at each training batch's end (and an epoch's first batch and end) the
    ranks agree on it with one all-reduce over a CPU (gloo) group, which needs no device sync, and all stop at
    the same batch after the same save.

    Ctrl+C is not left to Lightning, which raises KeyboardInterrupt wherever the process is (possibly inside an
    optimizer step) and exits with status 1 without a checkpoint: SIGINT is noted here and acted on after the
    current training batch, where the state is consistent (the checkpoint is the one a periodic save at that step
    would write); during an epoch's last batch or its validation, at that epoch's end. A second Ctrl+C stops at once.

    A `Checkpoint`, not a plain Callback: Lightning runs checkpoint callbacks after all others, in their order, so
    a save at an epoch's end comes after the ModelCheckpoint listed before this one has taken that epoch's
    best-checkpoint decision, which the saved state records. (Saved before it, a resumed run could overwrite
    best.ckpt with a worse model.)
    """

    def __init__(self, *, dirpath: str | Path, every_n_train_steps: int | None = None) -> None:
        self.path = Path(dirpath) / "last.ckpt"
        self.every_n_train_steps = every_n_train_steps
        self.received: int | None = None
        self._saved_step = 0
        self._group = None  # under DDP: the CPU process group the ranks agree on a signal through
        self._previous_handlers: dict[int, object] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.received = None
        self._saved_step = trainer.global_step  # a resumed run counts from the checkpoint it resumed from
        distributed = trainer.world_size > 1 and torch.distributed.is_initialized()
        self._group = torch.distributed.new_group(backend="gloo") if distributed else None  # every rank calls it
        for signum in (*SIGNALS, signal.SIGTERM) if distributed else SIGNALS:
            self._previous_handlers[signum] = signal.getsignal(signum)
            signal.signal(signum, self._note)

    def _note(self, signum: int, frame) -> None:
        if self.received == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl+C: the user does not want to wait for the batch
        self.received = signum

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        # A signal noted during the previous epoch's last batch or its validation: that epoch's end saved
        # last.ckpt (on_train_epoch_end), the point Lightning resumes from exactly.
        if batch_idx == 0 and self._signalled():
            self._stop(trainer)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        if batch_idx + 1 >= trainer.num_training_batches:
            return  # the epoch's end follows, after validation: on_train_epoch_end saves if it is time
        if self._signalled():
            self._save(trainer)
            self._stop(trainer)
        if self._due(trainer):
            self._save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._signalled() or self._due(trainer) or _last_epoch(trainer):
            self._save(trainer)

    def _signalled(self) -> bool:
        """Whether a signal was noted: in this process, or under DDP in any rank (every rank calls this at the
        same points, so all of them stop at the same batch)."""
        if self._group is None:
            return self.received is not None
        noted = torch.tensor([self.received or 0])
        torch.distributed.all_reduce(noted, op=torch.distributed.ReduceOp.MAX, group=self._group)
        if noted.item() and self.received is None:
            self.received = int(noted.item())  # another rank's signal (SIGTERM outranks SIGINT: the larger number)
        return self.received is not None

    def _due(self, trainer: L.Trainer) -> bool:
        # steps, not batches: with gradient accumulation several batches share a step; save once
        every = self.every_n_train_steps
        return bool(every) and trainer.global_step - self._saved_step >= every

    def _save(self, trainer: L.Trainer) -> None:
        if trainer.global_step == self._saved_step:
            return  # nothing trained since the last save (or since the checkpoint this run resumed from)
        trainer.save_checkpoint(self.path, weights_only=False)  # full state: resumable
        self._saved_step = trainer.global_step

    def _stop(self, trainer: L.Trainer) -> None:
        raise self.interrupted(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_handlers()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore_handlers()
        if isinstance(exception, SIGTERMException):
            self.received = signal.SIGTERM
            if trainer.training:  # not between validation batches: that validation's sums are in no checkpoint
                self._save(trainer)

    def interrupted(self, trainer: L.Trainer) -> Interrupted:
        """What stopped the run, and where it can continue from (also after Lightning's SIGTERMException)."""
        signum = self.received if self.received is not None else signal.SIGTERM
        resume = f"continue with resume={self.path.parent.parent}"
        if not self.path.exists():
            saved = "no checkpoint yet"
        elif self._saved_step == trainer.global_step:
            saved = f"saved {self.path}; {resume}"
        else:  # stopped during a validation: the state before it is kept, the steps since run again
            saved = f"during validation; {self.path} of step {self._saved_step} kept; {resume}"
        return Interrupted(f"{signal.Signals(signum).name} at step {trainer.global_step}: {saved}", signum=signum)

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
    `check_every_n_steps` steps, before every checkpoint save (so no checkpoint holds a skipped step: at the end of
    each validation for the weights-only best.ckpt) and at the end of training, and then stops with the same
    message. `deferred` forces either behaviour (tests).
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

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A weights-only save (best.ckpt) calls no callback's on_save_checkpoint; ModelCheckpoint makes it after
        # this hook (checkpoint callbacks run last), at this validation's end or at the epoch's.
        self._check(trainer, pl_module)

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
            f" {_last_checkpoint(trainer)}; {_advice(trainer)}"
        )


def _advice(trainer: L.Trainer) -> str:
    """What the user can do: a new run, or, from a resumable last.ckpt, this run at a lower lr (seg/run/resume.py)."""
    fresh = "lower optimizer.lr or set trainer.gradient_clip_val in a new run"
    resumable = [c.path for c in trainer.callbacks if isinstance(c, ResumableCheckpoint) and c.path.exists()]
    if not resumable:
        return fresh
    return (
        f"{fresh}, or continue this one from {resumable[0].name} with resume={resumable[0].parent.parent}"
        " optimizer.lr=<lower> resume_allow=[optimizer.lr] (docs/resume.md)"
    )


def _last_epoch(trainer: L.Trainer) -> bool:
    """At an epoch's end: whether training stops after it (epoch or step budget spent, or a callback asked)."""
    epochs_done = trainer.max_epochs not in (None, -1) and trainer.current_epoch + 1 >= trainer.max_epochs
    steps_done = trainer.max_steps not in (None, -1) and trainer.global_step >= trainer.max_steps
    return epochs_done or steps_done or trainer.should_stop


def _last_checkpoint(trainer: L.Trainer) -> str:
    saved = [
        Path(p)
        for callback in trainer.callbacks
        for p in (getattr(callback, "path", None), getattr(callback, "last_model_path", None))
        if isinstance(callback, (ModelCheckpoint, ResumableCheckpoint)) and p and Path(p).exists()
    ]
    return str(max(saved, key=lambda p: p.stat().st_mtime)) if saved else "none saved yet"
