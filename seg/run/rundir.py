"""Run directories: one per run, never shared, checked for writability and space before training starts.

- `hydra.run.dir` goes through the `seg.run_dir` resolver: a new run creates its directory atomically and,
  when another run created that name first (two starts in the same second), takes `<name>-2`, `-3`, ...;
  `resume=<dir>` returns that directory.
- `claim` then marks the directory as this run's with `run.json`, created exclusively: a run pointed at a
  directory another run owns (`hydra.run.dir=...`, `paths.output_dir=...`, two sweeps in one second)
  is refused instead of overwriting its checkpoints. Only `resume=` may continue an owned directory.
- While a run (or its resume, or a sweep job) runs, its process holds a lock on the directory (`hold`: an
  advisory flock the kernel drops when the process ends, however it ends): a second `resume=` of a run that
  is still running, or two launches of one sweep job at once, are refused instead of both writing checkpoints.
- `CheckOutputDir` (a Hydra callback) reports an unwritable location, another run's directory, a `resume=`
  directory without a checkpoint, with a different config or still running, in one line, and claims a new run's
  directory, all before Hydra writes its `.hydra/` and `train.log` there: a refused run changes nothing there;
- `check_space` refuses to start when the directory cannot hold the checkpoints the run will write.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

from hydra.experimental.callback import Callback
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from seg.errors import UserError
from seg.run.config_check import check_launcher_values
from seg.run.resume import LAST_CHECKPOINT, NO_CHECKPOINT, check_before_start

MARKER = "run.json"
_created: dict[str, str] = {}  # base name -> directory created for it, so repeated resolution agrees
_held: dict[str, int] = {}  # run directory -> the open descriptor whose flock says "this process runs it"
_claimed_at_start: set[str] = set()  # directories CheckOutputDir claimed for this process before Hydra wrote there


def run_dir(resume: str | None, base: str) -> str:
    """`resume` when continuing a run, else a directory at `base` (or `base-N`) created just now for this run."""
    if resume:
        return str(resume)
    if base not in _created:
        try:
            _created[base] = str(_create_unique(Path(base)))
        except OSError:
            return base  # not created: CheckOutputDir reports why, in one line
    return _created[base]


def hydra_subdir(resume: str | None, output_dir: str | None = None) -> str:
    """Where Hydra writes its copy of the config: a resumed run, or a sweep's job launched again (its directory
    has a `.hydra/` already), keeps the first run's `.hydra/` intact."""
    again = resume or (output_dir and (Path(output_dir) / ".hydra").is_dir())
    return f".hydra/resumed-{time.strftime('%Y-%m-%d_%H-%M-%S')}" if again else ".hydra"


def _create_unique(base: Path) -> Path:
    base.parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        candidate = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            candidate.mkdir()  # atomic: exactly one process creates a given name
            return candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"{base}: 999 runs of this name")


class CheckOutputDir(Callback):
    """Hydra callback: the run (or sweep) directory is resolved, created and written to before anything else.

    Without it an unwritable location fails inside Hydra with a traceback, or after the data is prepared.
    """

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        # Hydra writes .hydra/ and train.log into the run directory right after this: a directory that is not
        # this run's to write is refused now, before any of its files change.
        resume = config.get("resume")
        if resume and not Path(resume).expanduser().is_dir():
            _fail(f"resume={resume}: no such run directory; pass the directory of the run to continue")
        if resume and not (Path(resume).expanduser() / LAST_CHECKPOINT).is_file():
            _fail(f"resume={resume}: {NO_CHECKPOINT}")
        if resume:
            try:
                check_before_start(config)
            except UserError as error:
                _fail(str(error))
        directory = _check_writable(config, "hydra.run.dir")
        # DDP ranks > 0 (started by Lightning or SLURM with the same hydra.run.dir) join the directory rank 0 claimed.
        if rank_zero_only.rank != 0:
            return
        try:
            # Now, not when train() starts: a second run started a moment later is refused before Hydra writes
            # its .hydra/ and train.log into this run's directory.
            claim(directory, resuming=bool(resume))
        except UserError as error:
            _fail(str(error))
        _claimed_at_start.add(str(directory.resolve()))

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        try:
            check_launcher_values(config)  # the launcher acts before any job's own check runs
        except UserError as error:
            _fail(str(error))
        _check_writable(config, "hydra.sweep.dir")


def _fail(message: str) -> None:
    # Hydra has not reached the entry point's error handling yet: print the one line here.
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _check_writable(config: DictConfig, key: str) -> Path:
    directory = key
    try:
        directory = str(OmegaConf.select(config, key))  # for hydra.run.dir: creates it (run_dir above)
        Path(directory).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        reason = error.strerror or str(error)
        _fail(f"{key}={directory}: cannot write there ({reason}); choose a writable {key}")
    return Path(directory)


def claim(directory: Path, *, resuming: bool, sweep_job: bool = False) -> None:
    """Make `directory` this run's, or refuse: it is not writable, or it is another run's.

    `sweep_job`: a multirun job launched again into its sweep's directory takes it over from the earlier try once
    that try's process is gone (seg/run/resume.py has checked that the config is the same).
    A claim holds the directory's lock (`hold`) until the process ends or `let_go`.
    """
    if str(directory.resolve()) in _claimed_at_start:
        return  # CheckOutputDir claimed it for this run before Hydra wrote there
    try:
        directory.mkdir(parents=True, exist_ok=True)
        marker = directory / MARKER
        if resuming and not sweep_job:
            if not hold(directory):
                raise UserError(
                    f"resume={directory}: another process is running this run now (the run itself or another"
                    " resume=); wait for it to end, or stop it, and resume again"
                )
            return  # resume_checkpoint() checked that this is the run being continued
        held_before = str(directory.resolve()) in _held
        if not hold(directory):
            raise FileExistsError  # another process runs it: a sweep job launched twice at once
        try:
            if sweep_job and marker.exists() and not _alive(marker):
                marker.unlink()
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except OSError:
            if not held_before:
                let_go(directory)  # not this run's after all
            raise
    except FileExistsError:
        raise UserError(owned_message(directory)) from None
    except OSError as error:
        raise UserError(
            f"{directory}: run directory not writable ({error.strerror}); choose another hydra.run.dir"
        ) from None
    with os.fdopen(fd, "w") as handle:
        json.dump(
            {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "host": socket.gethostname(), "pid": os.getpid()}, handle
        )
        handle.write("\n")


def hold(directory: Path) -> bool:
    """Lock `directory` for this process (an exclusive flock on the directory itself: nothing is written, and the
    kernel lets go when the process ends, SIGKILL included). False when another process holds it; True again for
    the process that holds it (a test, or in-process runs one after another)."""
    key = str(directory.resolve())
    if key in _held:
        return True
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    _held[key] = fd
    return True


def let_go(directory: Path) -> None:
    """The run in `directory` is over in this process (train() returned or failed): another may take it."""
    key = str(directory.resolve())
    _claimed_at_start.discard(key)
    if (fd := _held.pop(key, None)) is not None:
        os.close(fd)  # closing the descriptor drops its flock


def _alive(marker: Path) -> bool:
    """Whether the run that wrote `marker` still runs: its process on this host; on another host, unknowable (no)."""
    try:
        info = json.loads(marker.read_text())
        pid, host = int(info["pid"]), info["host"]
    except (OSError, ValueError, KeyError, TypeError):
        return False  # unreadable: cut short when its run was killed
    if host != socket.gethostname() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, another user's
    return True


def owned_message(directory: Path) -> str:
    started = _read_marker(directory / MARKER)
    return (
        f"{directory}: already the directory of another run ({started}); choose a new hydra.run.dir"
        f" (or paths.output_dir), or continue that run with resume={directory}"
    )


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
