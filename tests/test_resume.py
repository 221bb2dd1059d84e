"""Resuming: a run stopped by a signal and resumed ends with exactly the numbers of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from seg.errors import Interrupted, UserError
from seg.paths import PROJECT_DIR
from seg.run.train import train
from tests.conftest import compose_config, tiny_overrides

COMPARED = ("val/iou", "val/dice", "test/iou", "test/dice", "global_step", "epochs")
EPOCHS = ["trainer.max_epochs=2"]  # 4 steps an epoch (32 images, batch 8): 8 steps


class SignalAtStep(Callback):
    """Sends `signum` to this very process when training reaches `step`: a real signal, in-process."""

    def __init__(self, step: int, signum: int = signal.SIGTERM) -> None:
        self.step, self.signum = step, signum

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


def signal_at(step: int, signum: int) -> list[str]:
    return [
        f"+callbacks.kill._target_={__name__}.SignalAtStep",
        f"+callbacks.kill.step={step}",
        f"+callbacks.kill.signum={int(signum)}",
    ]


def net_weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    return {k: v for k, v in state.items() if k.startswith("net.")}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("whole")
    return train(compose_config([*tiny_overrides(tmp), *EPOCHS]))


def stop_and_resume(tiny_cfg, run_dir: Path, step: int, signum: int) -> dict:
    kill = signal_at(step, signum)  # kept on resume (the config must not change); it fires at `step` only
    with pytest.raises(Interrupted, match=f"{signum.name} at step"):
        train(tiny_cfg(*EPOCHS, f"paths.output_dir={run_dir}", *kill))
    assert (run_dir / "checkpoints" / "last.ckpt").exists() and not (run_dir / "summary.json").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # our handlers are gone again
    return train(tiny_cfg(*EPOCHS, f"paths.output_dir={run_dir}", f"resume={run_dir}", *kill))


def assert_same_run(resumed: dict, whole: dict) -> None:
    for key in COMPARED:
        assert resumed[key] == whole[key], key  # exact: same weights, not merely close
    assert resumed["global_step"] == 8
    a, b = net_weights(Path(whole["best_checkpoint"])), net_weights(Path(resumed["best_checkpoint"]))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_sigterm_mid_epoch_then_resume_equals_uninterrupted(tiny_cfg, tmp_path, uninterrupted):
    """Stopped after step 6 (mid-epoch 1): same data order, same flips, same weights from there on."""
    assert_same_run(stop_and_resume(tiny_cfg, tmp_path / "stopped", 5, signal.SIGTERM), uninterrupted)


@pytest.mark.slow
def test_sigint_on_an_epochs_last_batch_then_resume_equals_uninterrupted(tiny_cfg, tmp_path, uninterrupted):
    """Ctrl+C during epoch 0's last batch stops after that epoch's validation, then resumes at epoch 1."""
    assert_same_run(stop_and_resume(tiny_cfg, tmp_path / "stopped", 3, signal.SIGINT), uninterrupted)


def test_resume_refuses_a_changed_config(tiny_cfg, tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(Interrupted):
        train(tiny_cfg("trainer.max_epochs=1", *signal_at(1, signal.SIGTERM)))
    with pytest.raises(UserError, match=r"config differs from the run's \(optimizer.lr: 0.006 -> 0.01\)"):
        train(tiny_cfg("trainer.max_epochs=1", *signal_at(1, signal.SIGTERM), f"resume={run_dir}", "optimizer.lr=1e-2"))
    with pytest.raises(UserError, match="learning-rate schedule"):
        train(tiny_cfg("trainer.max_epochs=5", *signal_at(1, signal.SIGTERM), f"resume={run_dir}"))
    with pytest.raises(UserError, match="no checkpoints/last.ckpt there"):
        train(tiny_cfg(f"paths.output_dir={tmp_path / 'new'}", f"resume={tmp_path / 'new'}"))


@pytest.mark.slow
def test_sigkill_then_resume_from_the_cli_equals_uninterrupted(tmp_path):
    """kill -9 mid-run (no chance to save): the resumed run goes on from the last periodic last.ckpt."""
    overrides = [o for o in tiny_overrides(tmp_path) if not o.startswith("paths.output_dir")]
    overrides += ["trainer.max_epochs=3", "callbacks.resumable_checkpoint.every_n_train_steps=2"]
    run_dir = tmp_path / "run"
    command = [sys.executable, str(PROJECT_DIR / "train.py"), *overrides]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    process = subprocess.Popen([*command, f"hydra.run.dir={run_dir}"], cwd=tmp_path, env=env)
    last, deadline = run_dir / "checkpoints" / "last.ckpt", time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline and _saved_step(last) < 6:
        time.sleep(0.05)
    process.kill()
    assert process.wait() == -signal.SIGKILL and not (run_dir / "summary.json").exists()
    stopped_at = _saved_step(last)

    resumed = subprocess.run([*command, f"resume={run_dir}"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (run_dir / ".hydra" / "overrides.yaml").exists() and list((run_dir / ".hydra").glob("resumed-*"))
    whole = train(compose_config([*tiny_overrides(tmp_path / "whole"), *overrides[-2:]]))
    summary = json.loads((run_dir / "summary.json").read_text())
    print(f"killed after step {stopped_at}; resumed {summary}; uninterrupted {whole}")
    for key in COMPARED:
        assert summary[key] == whole[key], key


def _saved_step(checkpoint: Path) -> int:
    try:
        return torch.load(checkpoint, map_location="cpu", weights_only=True)["global_step"]
    except Exception:  # not there yet, or being written
        return -1
