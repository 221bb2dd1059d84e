"""Faults, not mistakes: a full disk or a kill while a checkpoint is written, a generator killed half way, two runs
started on one directory. Each ends in one clear line or is recovered from, and no checkpoint is left
half-written. (The faults that end in a line through an entry point are rows of tests/test_bad_inputs.py.)
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from seg.data.generate import SyntheticSource
from seg.errors import UserError
from seg.paths import PROJECT_DIR
from seg.run import checkpoint_io
from seg.run.checkpoint_io import FileCheckpointIO
from tests.conftest import write_tiny_folder_dataset

STALLED_WRITER = textwrap.dedent(
    """
    import sys, time, torch
    from seg.run.checkpoint_io import FileCheckpointIO

    io, path = FileCheckpointIO(), sys.argv[1]
    io.save_checkpoint({"step": 1, "weight": torch.ones(1000)}, path)

    def stalled_save(checkpoint, target, *args, **kwargs):  # half of the file written, then the process is stopped
        with open(target, "wb") as handle:
            handle.write(b"PK\\x03\\x04" + bytes(500))
            handle.flush()
        print("writing", flush=True)
        time.sleep(120)

    torch.save = stalled_save
    io.save_checkpoint({"step": 2, "weight": torch.zeros(1000)}, path)
    """
)


def loaded_step(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["step"]


def start_stalled(script: str, argument) -> subprocess.Popen:
    """`script` in a process of its own that prints a line when it has stalled half way through its write."""
    return subprocess.Popen(
        [sys.executable, "-c", script, str(argument)],
        cwd=PROJECT_DIR,
        env={**os.environ, "PYTHONPATH": str(PROJECT_DIR)},
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow  # the writer is a process of its own, which imports Lightning
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_kill_during_a_checkpoint_write_leaves_the_previous_checkpoint_loadable(tmp_path, signum):
    path = tmp_path / "checkpoints" / "last.ckpt"
    writer = start_stalled(STALLED_WRITER, path)
    try:
        assert writer.stdout.readline().strip() == "writing"  # the second save is half done
        writer.send_signal(signum)
        assert writer.wait(timeout=60) != 0
    finally:
        writer.kill()
    assert loaded_step(path) == 1  # the previous checkpoint, whole
    partial = path.with_name("last.ckpt.partial")
    assert partial.exists() and partial.stat().st_size < 600  # the half-written bytes never took the name
    FileCheckpointIO().save_checkpoint({"step": 3, "weight": torch.zeros(1000)}, path)
    assert loaded_step(path) == 3 and not partial.exists()  # the next save replaces the stray .partial
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]


def test_a_full_disk_during_a_checkpoint_write_keeps_the_previous_one_and_says_so(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    FileCheckpointIO().save_checkpoint({"step": 1}, path)

    def fill_the_disk(checkpoint, target, *args, **kwargs):
        Path(target).write_bytes(b"PK\x03\x04 part of it")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))

    monkeypatch.setattr(checkpoint_io.torch, "save", fill_the_disk)
    with pytest.raises(UserError) as refused:
        FileCheckpointIO().save_checkpoint({"step": 2}, path)
    assert str(refused.value) == (
        f"{path}: the checkpoint could not be written (No space left on device); the previous one is unchanged;"
        " free space on that disk, then continue the run with resume=<run dir> (or start it again)"
    )
    monkeypatch.undo()
    assert loaded_step(path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no .partial left behind


STALLED_GENERATOR = textwrap.dedent(
    """
    import sys, time
    import seg.data.generate as generate
    from pathlib import Path

    real_write, written = generate.cv2.imwrite, []

    def slow_write(path, image):  # the generator is killed after writing some of its files
        written.append(path)
        if len(written) == 10:
            print("half", flush=True)
            time.sleep(120)
        return real_write(path, image)

    generate.cv2.imwrite = slow_write
    generate.SyntheticSource(counts={"train": 12, "val": 4, "test": 4}, size=32).ensure(Path(sys.argv[1]))
    """
)


def test_data_generation_killed_half_way_is_never_read_and_is_redone(tmp_path):
    root = tmp_path / "synthetic"
    generator = start_stalled(STALLED_GENERATOR, root)
    try:
        assert generator.stdout.readline().strip() == "half"
        generator.kill()
        generator.wait(timeout=60)
    finally:
        generator.kill()
    assert not root.exists()  # half a dataset never takes the dataset's name
    assert list(tmp_path.glob(".synthetic.tmp-*"))  # what the killed generator left
    source = SyntheticSource(counts={"train": 12, "val": 4, "test": 4}, size=32)
    source.ensure(root)  # the lock died with its holder: this process takes it and starts again
    assert source.is_complete(root)
    assert not list(tmp_path.glob(".synthetic.tmp-*"))  # the killed generator's leftovers removed


@pytest.mark.slow  # two training processes
def test_two_runs_started_on_one_directory_one_trains_the_other_is_refused_in_one_line(tmp_path):
    data = write_tiny_folder_dataset(tmp_path / "data")
    args = [
        "data=folder",
        f"data.root={data}",
        "data.num_workers=0",
        "data.batch_size=2",
        "trainer.max_epochs=1",
        f"hydra.run.dir={tmp_path / 'run'}",
        "~callbacks.progress_bar",
    ]
    command = [sys.executable, str(PROJECT_DIR / "train.py"), *args]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    runs = [subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(run.wait(timeout=600), run.stderr.read()) for run in runs]
    assert sorted(code for code, _ in results) == [0, 2], results
    _, refused = next(result for result in results if result[0] == 2)
    lines = [line for line in refused.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and "already the directory of another run" in lines[-1], refused
    assert "Traceback" not in refused
    assert (tmp_path / "run" / "summary.json").is_file()
    for checkpoint in (tmp_path / "run" / "checkpoints").glob("*"):
        assert checkpoint.suffix == ".ckpt" and torch.load(checkpoint, weights_only=True)  # each whole
