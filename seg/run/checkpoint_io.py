"""Checkpoint files written straight to disk (conf/trainer/default.yaml `plugins`)."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import torch
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem
from lightning.pytorch.plugins.io import TorchCheckpointIO

from seg.errors import UserError


class FileCheckpointIO(TorchCheckpointIO):
    """`torch.save` into `<path>.partial` beside the target, then renamed over it: atomic, as Lightning's own.

    Lightning's TorchCheckpointIO serializes the whole checkpoint into memory first and then writes a copy of those
    bytes (`_atomic_save`): a second pass over every byte of a checkpoint the size of the model and its optimizer
    state, at every save (docs/benchmarks.md, "End to end"). A kill mid-write leaves the previous checkpoint whole
    and a stray .partial file, which the next save of that checkpoint replaces; a failed write (a full disk) removes
    its .partial and stops the run with one line (tests/test_faults.py). Paths that are not local files (s3://, ...)
    go Lightning's way.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None or not isinstance(url_to_fs(str(path))[0], LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options)  # refuses storage_options with its message
            return
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        try:
            torch.save(checkpoint, partial)
            os.replace(partial, path)  # atomic on POSIX and Windows
        except OSError as error:
            partial.unlink(missing_ok=True)
            raise UserError(write_failed(path, error)) from None


def write_failed(path: Path, error: OSError) -> str:
    kept = "the previous one is unchanged" if path.exists() else "no earlier one was written"
    fix = "free space on that disk" if error.errno in (errno.ENOSPC, errno.EDQUOT) else "check that location"
    return (
        f"{path}: the checkpoint could not be written ({error.strerror or error}); {kept}; {fix}, then continue"
        f" the run with resume=<run dir> (or start it again)"
    )
