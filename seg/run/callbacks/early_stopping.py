"""Early stopping that survives a resume: Lightning's EarlyStopping, whose state the checkpoints already carry."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping


class ResumableEarlyStopping(EarlyStopping):
    """Lightning's EarlyStopping (conf/callbacks/early_stopping.yaml). Its state (best score, validations
    without improvement, the epoch it stopped at) is in every checkpoint, last.ckpt included, so a run
    interrupted before the stop point and resumed stops where the uninterrupted run stops.

    Lightning does not keep `trainer.should_stop` in the checkpoint: a run resumed after it had stopped would
    train one more epoch before the next check stopped it again. Here it stops before training instead, so
    resuming a finished run changes nothing.
    """

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.stopped_epoch > 0 or self.wait_count >= self.patience:
            trainer.should_stop = True
