"""Output safety: one directory per run, never shared; unwritable or full locations refused up front; NaN stops."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from seg.errors import TrainingDiverged, UserError
from seg.heads import SigmoidBCE
from seg.paths import PROJECT_DIR
from seg.run import rundir
from seg.run.train import train


def test_runs_started_in_the_same_second_get_their_own_directories(tmp_path, monkeypatch):
    base = str(tmp_path / "outputs" / "2026-12-01" / "10-00-00")
    first = rundir.run_dir(None, base)
    assert rundir.run_dir(None, base) == first  # Hydra may resolve hydra.run.dir more than once: same answer
    monkeypatch.setattr(rundir, "_created", {})  # a second process, same second
    second = rundir.run_dir(None, base)
    assert (first, second) == (base, base + "-2") and Path(second).is_dir()
    assert rundir.run_dir(str(tmp_path / "old"), base) == str(tmp_path / "old")  # resume: that directory


def test_a_directory_is_claimed_once(tmp_path):
    rundir.claim(tmp_path / "run", resuming=False)
    with pytest.raises(UserError, match=r"already the directory of another run \(started .*\); choose a new"):
        rundir.claim(tmp_path / "run", resuming=False)
    rundir.claim(tmp_path / "run", resuming=True)  # resume= continues it


def test_a_second_run_into_the_same_directory_is_refused_before_training(tiny_cfg, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text('{"started": "2026-12-01 10:00:00", "host": "h", "pid": 1}')
    with pytest.raises(UserError, match="started 2026-12-01 10:00:00 on h"):
        train(tiny_cfg())
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_full_disk_is_reported_before_training(tiny_cfg, tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(rundir.shutil, "disk_usage", lambda path: usage(2**30, 2**30 - 2**20, 2**20))
    with pytest.raises(UserError, match=r"1 MiB free, but this run's checkpoints need about \d+ MiB"):
        train(tiny_cfg())
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow  # a real CLI process (imports alone take seconds); the in-process tests cover the logic
def test_an_unwritable_output_location_is_one_line(tmp_path):
    (tmp_path / "outputs").write_text("a file where the runs' folder should be")
    result = subprocess.run(
        [sys.executable, str(PROJECT_DIR / "train.py")],
        cwd=tmp_path,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: hydra.run.dir=outputs/")
    assert "cannot write there (Not a directory)" in result.stderr and "Traceback" not in result.stderr


def test_a_nan_loss_stops_training_at_once_with_one_message(tiny_cfg, tmp_path, monkeypatch):
    original, train_calls = SigmoidBCE.loss, []

    def loss(self, logits, mask, valid=None):
        if torch.is_grad_enabled():  # a training step, not validation
            train_calls.append(1)
            if len(train_calls) == 6:
                return original(self, logits, mask, valid) * float("nan")
        return original(self, logits, mask, valid)

    monkeypatch.setattr(SigmoidBCE, "loss", loss)
    with pytest.raises(TrainingDiverged) as stopped:
        train(tiny_cfg("callbacks.resumable_checkpoint.every_n_train_steps=4"))  # last.ckpt at step 4, epoch 0's end
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert str(stopped.value) == (
        f"train/loss is nan at step 5 (epoch 1, head sigmoid_bce); training stopped, last good checkpoint: {last};"
        " lower optimizer.lr or set trainer.gradient_clip_val in a new run, or continue this one from last.ckpt with"
        f" resume={tmp_path / 'run'} optimizer.lr=<lower> resume_allow=[optimizer.lr] (docs/resume.md)"
    )
    assert len(train_calls) == 6  # not a run of NaNs to the end (12 steps)
    state = torch.load(last, map_location="cpu", weights_only=True)
    assert state["global_step"] == 4 and all(torch.isfinite(v).all() for v in state["state_dict"].values())


def test_a_sweep_job_launched_again_takes_over_its_directory_once_the_earlier_try_is_gone(tmp_path):
    directory = tmp_path / "sweep" / "0"
    directory.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    marker = {"started": "2026-12-01 10:00:00", "host": socket.gethostname()}
    (directory / "run.json").write_text(json.dumps({**marker, "pid": int(dead.stdout)}))
    rundir.claim(directory, resuming=False, sweep_job=True)  # its process has exited: this job's again
    assert json.loads((directory / "run.json").read_text())["pid"] == os.getpid()

    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (directory / "run.json").write_text(json.dumps({**marker, "pid": alive.pid}))
        with pytest.raises(UserError, match="already the directory of another run"):
            rundir.claim(directory, resuming=False, sweep_job=True)  # still running: two launches at once
        with pytest.raises(UserError, match="already the directory of another run"):
            rundir.claim(directory, resuming=False)  # outside a sweep: never taken over
    finally:
        alive.kill()
        alive.wait()


HOLDER = (
    "import fcntl, os, sys, time\n"
    "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
    "fcntl.flock(fd, fcntl.LOCK_EX)\n"
    "print('holding', flush=True)\n"
    "time.sleep(120)\n"
)


def test_a_run_still_running_in_another_process_is_not_resumed_or_taken_over_until_that_process_ends(tmp_path):
    directory = tmp_path / "run"
    directory.mkdir()
    (directory / "run.json").write_text(json.dumps({"started": "2026-12-01 10:00:00", "host": "h", "pid": 1}))
    running = subprocess.Popen([sys.executable, "-c", HOLDER, str(directory)], stdout=subprocess.PIPE, text=True)
    try:
        assert running.stdout.readline().strip() == "holding"  # the run (or a first resume=) holds the lock
        before = sorted((p.name, p.stat().st_mtime_ns) for p in directory.iterdir())
        with pytest.raises(UserError, match=rf"^resume={directory}: another process is running this run now"):
            rundir.claim(directory, resuming=True)
        with pytest.raises(UserError, match="already the directory of another run"):
            rundir.claim(directory, resuming=False, sweep_job=True)  # a sweep job launched twice at once
        assert sorted((p.name, p.stat().st_mtime_ns) for p in directory.iterdir()) == before  # nothing written
    finally:
        running.kill()
        running.wait()
    rundir.claim(directory, resuming=True)  # its process ended (SIGKILL): the kernel dropped the lock
    assert rundir.hold(directory)  # held by this process now, until let_go
    rundir.let_go(directory)


def test_a_new_run_claims_its_directory_before_hydra_writes_there(tmp_path):
    directory = tmp_path / "run"
    config = OmegaConf.create({"resume": None, "hydra": {"run": {"dir": str(directory)}}})
    rundir.CheckOutputDir().on_run_start(config)  # Hydra writes .hydra/ and train.log right after this
    assert json.loads((directory / "run.json").read_text())["pid"] == os.getpid()
    rundir.claim(directory, resuming=False)  # train()'s claim: this run's own, claimed at the start
    second = subprocess.run(  # a second run started a moment later, on the same hydra.run.dir
        [
            sys.executable,
            "-c",
            "import sys; from omegaconf import OmegaConf; from seg.run.rundir import CheckOutputDir;"
            f" CheckOutputDir().on_run_start(OmegaConf.create({{'resume': None, 'hydra': {{'run': {{'dir': '{directory}'}}}}}}))",
        ],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
    )
    assert second.returncode == 2
    assert second.stderr.startswith(f"error: {directory}: already the directory of another run (started ")
    assert sorted(p.name for p in directory.iterdir()) == ["run.json"]
    rundir.let_go(directory)
    with pytest.raises(UserError, match="already the directory of another run"):
        rundir.claim(directory, resuming=False)  # once let go, only resume= may continue it
    free = "import fcntl, os, sys; fcntl.flock(os.open(sys.argv[1], os.O_RDONLY), fcntl.LOCK_EX | fcntl.LOCK_NB)"
    assert subprocess.run([sys.executable, "-c", free, str(directory)]).returncode == 0  # the refusal kept no lock
