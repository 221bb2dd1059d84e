"""Run directories: one per run, never shared, checked for writability and space before training starts.

- `hydra.run.dir` goes through the `seg.run_dir` resolver: a new run creates its directory atomically and,
  when another run created that name first (two starts in the same second), takes `<name>-2`, `-3`, ...;
  `resume=<dir>` returns that directory.
- `claim` then marks the directory as this run's with `run.json`, created exclusively: a run pointed at a
  directory another run owns (`hydra.run.dir=...`, `paths.output_dir=...`, two sweeps in one second)
  is refused instead of overwriting its checkpoints. Only `resume=` may continue an owned directory.
- `check_space` refuses to start when the directory cannot hold the checkpoints the run will write.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

from seg.errors import UserError

MARKER = "run.json"
_created: dict[str, str] = {}  # base name -> directory created for it, so repeated resolution agrees


def register_resolvers() -> None:
    """Called by the entry points before Hydra resolves `hydra.run.dir`."""
    if not OmegaConf.has_resolver("seg.run_dir"):
        OmegaConf.register_new_resolver("seg.run_dir", run_dir)
        OmegaConf.register_new_resolver("seg.hydra_subdir", hydra_subdir)


def run_dir(resume: str | None, base: str) -> str:
    """`resume` when continuing a run, else a directory at `base` (or `base-N`) created just now for this run."""
    if resume:
        return str(resume)
    if base not in _created:
        _created[base] = str(_create_unique(Path(base)))
    return _created[base]


def hydra_subdir(resume: str | None) -> str:
    """Where Hydra writes its copy of the config: a resumed run keeps the first run's `.hydra/` intact."""
    return f".hydra/resumed-{time.strftime('%Y-%m-%d_%H-%M-%S')}" if resume else ".hydra"


def _create_unique(base: Path) -> Path:
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
        for n in range(1, 1000):
            candidate = base if n == 1 else base.with_name(f"{base.name}-{n}")
            try:
                candidate.mkdir()  # atomic: exactly one process creates a given name
                return candidate
            except FileExistsError:
                continue
    except OSError as error:
        # Raised while Hydra resolves its config, before the entry point's error handling: print it here.
        print(
            f"error: {base}: cannot create the run directory ({error.strerror}); choose a writable hydra.run.dir",
            file=sys.stderr,
        )
        sys.exit(2)
    raise RuntimeError(f"{base}: 999 runs of the same name")


def claim(directory: Path, *, resuming: bool) -> None:
    """Make `directory` this run's, or refuse: it is not writable, or it is another run's."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        marker = directory / MARKER
        if resuming:
            return  # resume_checkpoint() checked that this is the run being continued
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        started = _read_marker(directory / MARKER)
        raise UserError(
            f"{directory}: already the directory of another run ({started}); choose a new hydra.run.dir"
            f" (or paths.output_dir), or continue that run with resume={directory}"
        ) from None
    except OSError as error:
        raise UserError(
            f"{directory}: run directory not writable ({error.strerror}); choose another hydra.run.dir"
        ) from None
    with os.fdopen(fd, "w") as handle:
        json.dump(
            {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "host": socket.gethostname(), "pid": os.getpid()}, handle
        )
        handle.write("\n")


def _read_marker(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
        return f"started {info['started']} on {info['host']}"
    except (OSError, ValueError, KeyError):
        return f"see {path}"


def check_space(directory: Path, needed_bytes: int) -> None:
    free = shutil.disk_usage(directory).free
    if free < needed_bytes:
        raise UserError(
            f"{directory}: {free / 2**20:.0f} MiB free, but this run's checkpoints need about"
            f" {needed_bytes / 2**20:.0f} MiB; free space or choose another hydra.run.dir"
        )
