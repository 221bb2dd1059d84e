"""Turning a user's mistake into one line on stderr and exit status 2, instead of a library traceback."""

from __future__ import annotations

import logging
import sys
import warnings
from contextlib import contextmanager

from hydra.errors import InstantiationException

from seg.errors import Interrupted, UserError


@contextmanager
def report_user_errors():
    try:
        yield
    except Interrupted as stop:  # not a mistake: a signal, with a checkpoint saved to resume from
        print(f"stopped: {stop}", file=sys.stderr)
        sys.exit(128 + stop.signum)
    except UserError as error:
        _fail(str(error))
    except InstantiationException as error:
        # Hydra wraps the constructor's TypeError, e.g. an unknown Trainer argument; its text names the
        # target and the config key ("full_key: trainer"), which is what the user has to change.
        cause = error.__cause__ or error
        if isinstance(cause, UserError):
            _fail(str(cause))
        _fail(" ".join(str(error).split()))


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("💡 Tip")


def quiet_library_noise() -> None:
    """Drop start-up chatter that asks nothing of the user: Lightning's advertising tips and a deprecation
    warning Lightning raises from its own code (lightning 2.6 with torch 2.14)."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_DropTips())
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    # On resume (seg/inference/checkpoint.py) these are expected and wrong: the datamodule restores the training
    # stream's position (seg/data/sampler.py), the CSV logger appends, and run.json guards the directory.
    warnings.filterwarnings("ignore", message=r"You're resuming from a checkpoint that ended before the epoch ended")
    warnings.filterwarnings("ignore", message=r"Experiment logs directory .* exists and is not empty")
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
