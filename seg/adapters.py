"""What this project relies on in Lightning and Hydra beyond their public API, in one place.

Each item has no public equivalent in the installed versions (lightning 2.6, hydra-core 1.3); tests/test_adapters.py
pins the behaviour each relies on, so an upgrade that changes it fails there first, with the item's name.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

# ---- Lightning ---------------------------------------------------------------------------------------------------


def batches_trained_this_epoch(trainer) -> int:
    """Training batches of the current epoch whose step has run, as counted by Lightning's fit loop.

    The Trainer's public counters are per optimizer step (`global_step`, which gradient accumulation and manual
    optimization decouple from batches) or per epoch; the fit loop's own progress counter is the one that matches
    the batches the sampler handed out. A checkpoint written in `on_train_batch_end` already counts its batch.
    """
    return trainer.fit_loop.epoch_loop.batch_progress.current.processed


# Loggers and message starts of Lightning's chatter that asks nothing of the user (filtered in seg/run/cli.py).
RANK_ZERO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")
TIP = "💡 Tip"  # advertising for Lightning's cloud services, at every Trainer's start
# Logged at INFO by every trainer.save_checkpoint(path) that does not pass weights_only: our checkpoints are full on
# purpose (resumable), so the line says nothing, at every save.
WEIGHTS_ONLY = ("lightning.pytorch.trainer.connectors.checkpoint_connector", "`weights_only` was not set")
# Warnings that are expected and wrong on a resume: the datamodule restores the training stream's position
# (seg/data/sampler.py), the CSV log is written back (seg/run/loggers.py), and run.json guards the directory.
# Regular expressions.
RESUME_WARNINGS = (
    r"You're resuming from a checkpoint that ended before the epoch ended",
    r"Experiment logs directory .* exists and is not empty",
    r"Checkpoint directory .* exists and is not empty",
)

# ---- Hydra -------------------------------------------------------------------------------------------------------

HYDRA_FULL_ERROR = "HYDRA_FULL_ERROR"  # Hydra's documented switch: raise its errors instead of printing them
# The start of the ValueError Hydra raises for `GROUP=null`: no exception type or attribute tells that case apart.
NULL_GROUP = "Config group override must be a string or a list"


@contextmanager
def hydra_raises_errors() -> Iterator[bool]:
    """Inside, a Hydra `main()` raises its configuration errors to the caller instead of printing them itself.

    Yields False (and changes nothing) when the user set HYDRA_FULL_ERROR=1: they asked for Hydra's full report.
    """
    if os.environ.get(HYDRA_FULL_ERROR) == "1":
        yield False
        return
    os.environ[HYDRA_FULL_ERROR] = "1"
    try:
        yield True
    finally:
        os.environ.pop(HYDRA_FULL_ERROR, None)
