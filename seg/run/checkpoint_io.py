"""Checkpoint files written straight to disk (conf/trainer/default.yaml `plugins`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem
from lightning.pytorch.plugins.io import TorchCheckpointIO


class FileCheckpointIO(TorchCheckpointIO):
    """`torch.save` into `<path>.partial` beside the target, then renamed over it: atomic, as Lightning's own.

    Lightning's TorchCheckpointIO serializes the whole checkpoint into memory first and then writes a copy of those
    bytes (`_atomic_save`): a second pass over every byte of a checkpoint the size of the model and its optimizer
    state, at every save (measured in docs/benchmarks.md, "End to end"). A crash mid-write leaves the previous checkpoint whole (and a
    stray .partial file). Paths that are not local files (s3://, ...) go Lightning's way.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None or not isinstance(url_to_fs(str(path))[0], LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options)  # refuses storage_options with its message
            return
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        torch.save(checkpoint, partial)
        os.replace(partial, path)  # atomic on POSIX and Windows
