"""An exclusive file lock, so that concurrent sweep jobs or DDP processes do file work once."""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def locked(lock_path: Path):
    """Hold an exclusive lock on `lock_path` (created if missing) for the block; others wait."""
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
