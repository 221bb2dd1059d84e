"""Resuming: a run stopped by a signal and resumed ends with exactly the numbers of an uninterrupted run."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from seg.errors import Interrupted, UserError
from seg.paths import PROJECT_DIR
from seg.run.resume import ADDED_KEYS, ScaleRestoredLearningRate, check_unchanged, config_changes, resolved
from seg.run.train import train
from tests.conftest import compose_config, run_cli, tiny_overrides, write_tiny_folder_dataset

COMPARED = ("val/iou", "val/dice", "test/iou", "test/dice", "global_step", "epochs")
EPOCHS = ["trainer.max_epochs=2"]  # 4 steps an epoch (32 images, batch 8): 8 steps


class SignalAtStep(Callback):
    """Sends `signum` to this very process when training reaches `step`: a real signal, in-process."""

    def __init__(self, step: int, signum: int = signal.SIGTERM) -> None:
        self.step, self.signum = step, signum

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


class SignalInValidation(SignalAtStep):
    """`signum` during the validation that follows training step `step` (at its first batch), in a run not resumed."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        pass

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if (
            trainer.ckpt_path is None
            and not trainer.sanity_checking
            and trainer.global_step == self.step
            and batch_idx == 0
        ):
            os.kill(os.getpid(), self.signum)


class SignalWhileSaving(SignalAtStep):
    """`signum` while the full checkpoint of step `step` is being assembled and written (last.ckpt)."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        pass

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


def signal_at(step: int, signum: int, when: str = "SignalAtStep") -> list[str]:
    return [
        f"+callbacks.kill._target_={__name__}.{when}",
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


def stop_and_resume(
    tiny_cfg, run_dir: Path, step: int, signum: int, *more: str, when: str = "SignalAtStep", stopped: str = ""
) -> dict:
    kill = [*signal_at(step, signum, when), *more]  # kept on resume (the config must not change); fires once
    with pytest.raises(Interrupted, match=stopped or f"{signum.name} at step"):
        train(tiny_cfg(*EPOCHS, f"paths.output_dir={run_dir}", *kill))
    assert (run_dir / "checkpoints" / "last.ckpt").exists() and not (run_dir / "summary.json").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # our handlers are gone again
    return train(tiny_cfg(*EPOCHS, f"paths.output_dir={run_dir}", f"resume={run_dir}", *kill))


def assert_same_run(resumed: dict, whole: dict, *, loss_per_batch_differs: bool = False) -> None:
    for key in COMPARED:
        assert resumed[key] == whole[key], key  # exact: same weights, not merely close
    assert resumed["global_step"] == 8
    a, b = net_weights(Path(whole["best_checkpoint"])), net_weights(Path(resumed["best_checkpoint"]))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    unequal = ("val/loss", "test/loss") if loss_per_batch_differs else ()
    assert_same_csv_log(Path(resumed["run_dir"]), Path(whole["run_dir"]), unequal=unequal)


def assert_same_csv_log(resumed: Path, whole: Path, *, unequal: tuple[str, ...] = ()) -> None:
    """metrics.csv reads as the uninterrupted run's, row for row, train/iou of the epoch resumed in included: the
    rows logged before the checkpoint are kept (Lightning's CSV writer deletes the file when the resumed run
    starts), the later ones logged once. `unequal`: columns that differ by design (a mean over other batches)."""
    a, b = (run / "csv" / "metrics.csv" for run in (resumed, whole))
    if not unequal:
        assert a.read_text() == b.read_text()
        return
    rows = [
        [{k: v for k, v in row.items() if k not in unequal} for row in csv.DictReader(f.read_text().splitlines())]
        for f in (a, b)
    ]
    assert rows[0] == rows[1] and len(rows[0]) > 10


def test_sigterm_mid_epoch_then_resume_equals_uninterrupted(tiny_cfg, tmp_path, uninterrupted):
    """Stopped after step 6 (mid-epoch 1): same data order, same flips, same weights from there on."""
    assert_same_run(stop_and_resume(tiny_cfg, tmp_path / "stopped", 5, signal.SIGTERM), uninterrupted)


def test_sigterm_during_validation_then_resume_equals_uninterrupted(tiny_cfg, tmp_path, uninterrupted):
    """SIGTERM in epoch 0's validation (4 batches): Lightning stops after the first; last.ckpt of step 2 is kept and
    the resumed run runs steps 3 and 4 and that validation again."""
    more = [
        "data.eval_batch_size=4",  # IoU and Dice are sums of counts: the same for any eval batch size
        "callbacks.resumable_checkpoint.every_n_train_steps=2",
    ]
    stopped = r"SIGTERM at step 4: during validation; \S+last.ckpt of step 2 kept; continue with resume="
    resumed = stop_and_resume(
        tiny_cfg, tmp_path / "stopped", 4, signal.SIGTERM, *more, when="SignalInValidation", stopped=stopped
    )
    assert_same_run(resumed, uninterrupted, loss_per_batch_differs=True)  # val/loss: a mean of batch means


@pytest.mark.slow
def test_sigterm_while_a_checkpoint_is_written_then_resume_equals_uninterrupted(tiny_cfg, tmp_path, uninterrupted):
    """SIGTERM during the periodic save of step 2: that save completes, the run stops after step 3's batch."""
    more = ["callbacks.resumable_checkpoint.every_n_train_steps=2"]
    resumed = stop_and_resume(tiny_cfg, tmp_path / "stopped", 2, signal.SIGTERM, *more, when="SignalWhileSaving")
    assert_same_run(resumed, uninterrupted)


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


# ---- your own data: `auto` values ---------------------------------------------------------------------------


def folder_overrides(tmp_path: Path, root: Path) -> list[str]:
    """The tiny run on a folder dataset with the defaults `auto` channels, mean and std: 16 train images, batch 4."""
    tiny = [o for o in tiny_overrides(tmp_path) if not o.startswith(("data.", "paths.", "trainer.max_epochs"))]
    return [*tiny, "data=folder", f"data.root={root}", "data.batch_size=4", *EPOCHS]


@pytest.mark.slow  # two folder-data fits (~40 s); test_auto_counts_as_the_settled_value_and_a_real_change_does_not covers the rule
def test_a_folder_dataset_with_auto_values_resumes_exactly(tmp_path):
    """The first run stores what `auto` settled on (1 channel, measured mean/std); `auto` again is the same config."""
    root = write_tiny_folder_dataset(tmp_path / "folder", counts=(16, 4, 4))
    overrides = folder_overrides(tmp_path, root)
    whole = train(compose_config([*overrides, f"paths.output_dir={tmp_path / 'whole'}"]))
    run_dir, kill = tmp_path / "stopped", signal_at(5, signal.SIGTERM)
    with pytest.raises(Interrupted, match="SIGTERM at step 6"):
        train(compose_config([*overrides, f"paths.output_dir={run_dir}", *kill]))
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["seg_config"]
    assert saved["data"]["in_channels"] == 1 and saved["data"]["mean"] != "auto"  # settled values are stored
    resumed = train(compose_config([*overrides, f"paths.output_dir={run_dir}", f"resume={run_dir}", *kill]))
    for key in COMPARED:
        assert resumed[key] == whole[key], key


def test_auto_counts_as_the_settled_value_and_a_real_change_does_not():
    saved = compose_config(["data=folder", "data.root=x"])
    current = saved.copy()
    saved.data.in_channels, saved.data.mean, saved.data.std = 1, [0.41537], [0.114779]
    assert config_changes(saved, current) == []  # current has `auto`: whatever it settled on
    current.data.mean = [0.5]
    assert config_changes(saved, current) == ["data.mean: [0.41537] -> [0.5]"]
    saved.data.cache = "auto"
    current.data.cache = False
    assert "data.cache: auto -> False" in config_changes(saved, current)


def test_paths_inside_the_run_directory_compare_relative_to_it(tiny_cfg, tmp_path):
    """A run directory moved (copied off a cluster) resumes: checkpoint and log dirs follow it."""
    saved, current = tiny_cfg(f"paths.output_dir={tmp_path / 'a'}"), tiny_cfg(f"paths.output_dir={tmp_path / 'b'}")
    assert config_changes(resolved(saved), resolved(current)) == []


def test_a_key_the_old_run_did_not_have_says_why_and_can_be_allowed(tiny_cfg, tmp_path):
    """A run from before a config-format change (here: no model.compile): the line names the key and the way on."""
    current = resolved(tiny_cfg())
    saved = current.copy()
    del saved.model["compile"]
    with pytest.raises(UserError) as refused:
        check_unchanged(saved, current, where="resume=old", run_dir=tmp_path)
    assert str(refused.value).startswith("resume=old: the config differs from the run's (model.compile: <absent> ->")
    assert str(refused.value).endswith(
        "the run's config has no model.compile (written by an older version of this code): if the value given"
        " reproduces that run, resume with resume_allow=[model.compile]"
    )
    current.resume_allow = ["model.compile"]
    check_unchanged(saved, current, where="resume=old", run_dir=tmp_path)  # allowed knowingly


def test_a_key_added_later_continues_at_its_old_behaviour_and_is_refused_at_another(tiny_cfg, tmp_path):
    """ADDED_KEYS: a run saved before `evaluate_last` and `last_layer_lr_scale` existed did what their values
    False and 1.0 do; it (or its sweep job) continues at those values, not at others."""
    current = resolved(tiny_cfg())
    saved = current.copy()
    for key in ADDED_KEYS:
        del saved[key]
    check_unchanged(saved, current, where="resume=old", run_dir=tmp_path)
    current.last_layer_lr_scale = 2.0
    with pytest.raises(UserError, match=r"\(last_layer_lr_scale: 1.0 -> 2.0\)"):
        check_unchanged(saved, current, where="resume=old", run_dir=tmp_path)


def test_a_changed_lr_is_refused_unless_allowed(tiny_cfg, tmp_path):
    saved = resolved(tiny_cfg())
    current = resolved(tiny_cfg("optimizer.lr=1e-3"))
    with pytest.raises(UserError, match=r"\(optimizer.lr: 0.006 -> 0.001\).*add resume_allow=\[optimizer.lr\]"):
        check_unchanged(saved, current, where="resume=r", run_dir=tmp_path)
    current.resume_allow = ["optimizer.lr"]
    check_unchanged(saved, current, where="resume=r", run_dir=tmp_path)


def test_scaling_the_restored_lr_scales_the_rest_of_the_one_cycle_schedule():
    """What resume_allow=[optimizer.lr] does to the restored optimizer and schedule: every later lr times the ratio."""

    def schedule(scale_at: int | None) -> list[float]:
        weight = torch.nn.Parameter(torch.zeros(1))
        optimizer = torch.optim.AdamW([weight], lr=0.01)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.01, total_steps=20)
        lrs = []
        for step in range(20):
            if step == scale_at:
                restored = SimpleNamespace(
                    optimizers=[optimizer], lr_scheduler_configs=[SimpleNamespace(scheduler=scheduler)]
                )
                ScaleRestoredLearningRate(0.5).on_train_start(restored, None)
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        return lrs

    whole, scaled = schedule(None), schedule(8)
    assert scaled[:8] == whole[:8]
    assert scaled[8:] == pytest.approx([lr / 2 for lr in whole[8:]], rel=1e-9)


# ---- a refused resume writes nothing --------------------------------------------------------------------------


def fingerprint(directory: Path) -> dict[str, tuple[str, int]]:
    """sha1 and mtime (ns) of every file under `directory`, and the set of its paths."""
    import hashlib

    return {
        str(p.relative_to(directory)): (hashlib.sha1(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow  # a real CLI process (imports alone take seconds)
def test_a_refused_resume_from_the_cli_changes_nothing_in_the_run_directory(tmp_path):
    overrides = [o for o in tiny_overrides(tmp_path) if not o.startswith(("paths.", "trainer.max_epochs"))]
    run_dir = tmp_path / "run"
    first = run_cli(*overrides, "trainer.max_epochs=1", f"hydra.run.dir={run_dir}", cwd=tmp_path, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    before = fingerprint(run_dir)
    assert "checkpoints/last.ckpt" in before and "train.log" in before
    time.sleep(0.01)  # a write now would show as a new mtime
    refused = run_cli(*overrides, "trainer.max_epochs=1", "optimizer.lr=1e-2", f"resume={run_dir}", cwd=tmp_path)
    assert refused.returncode == 2
    line = refused.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: resume={run_dir}: the config differs from the run's (optimizer.lr: 0.006 -> 0.01)")
    assert "Traceback" not in refused.stderr
    assert fingerprint(run_dir) == before  # no .hydra/resumed-*, no train.log line, no checkpoint touched
    assert not list((run_dir / ".hydra").glob("resumed-*"))


# ---- the matrix through the CLI: SIGTERM, SIGKILL mid-write, a prepared public set --------------------------


class KillWhileWriting(Callback):
    """kill -9 of this process half way through writing the full checkpoint of step `step`, in a run not resumed."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        if trainer.ckpt_path is not None or trainer.global_step != self.step:
            return
        import seg.run.checkpoint_io as checkpoint_io

        def half_a_save(obj, path) -> None:
            torch.save(obj, path)
            with open(path, "r+b") as handle:
                handle.truncate(Path(path).stat().st_size // 2)
            os.kill(os.getpid(), signal.SIGKILL)

        checkpoint_io.torch = SimpleNamespace(save=half_a_save)


def cli_overrides(tmp_path: Path, root: Path) -> list[str]:
    return [*folder_overrides(tmp_path, root), "callbacks.resumable_checkpoint.every_n_train_steps=2"]


@pytest.mark.slow
def test_sigterm_to_the_cli_on_a_folder_dataset_exits_143_and_resumes_exactly(tmp_path):
    root = write_tiny_folder_dataset(tmp_path / "folder", counts=(16, 4, 4))
    overrides, run_dir = cli_overrides(tmp_path, root), tmp_path / "run"
    command = [sys.executable, str(PROJECT_DIR / "train.py"), *overrides]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    process = subprocess.Popen(
        [*command, f"hydra.run.dir={run_dir}"], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True
    )
    last, deadline = run_dir / "checkpoints" / "last.ckpt", time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline and _saved_step(last) < 2:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert re.search(rf"stopped: SIGTERM at step \d+: saved {last}; continue with resume={run_dir}", stderr)

    resumed = run_cli(*overrides, f"resume={run_dir}", cwd=tmp_path, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    whole = train(compose_config([*overrides, f"paths.output_dir={tmp_path / 'whole'}"]))
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in COMPARED:
        assert summary[key] == whole[key], key


@pytest.mark.slow
def test_sigkill_during_a_checkpoint_write_keeps_the_previous_one_and_resumes_exactly(tmp_path):
    root = write_tiny_folder_dataset(tmp_path / "folder", counts=(16, 4, 4))
    overrides = [
        *cli_overrides(tmp_path, root),
        f"+callbacks.kill._target_={__name__}.KillWhileWriting",
        "+callbacks.kill.step=4",
    ]
    run_dir = tmp_path / "run"
    killed = run_cli(*overrides, f"hydra.run.dir={run_dir}", cwd=tmp_path, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    last = run_dir / "checkpoints" / "last.ckpt"
    assert _saved_step(last) == 2 and (run_dir / "checkpoints" / "last.ckpt.partial").exists()  # step 4's, cut short

    resumed = run_cli(*overrides, f"resume={run_dir}", cwd=tmp_path, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    whole = train(compose_config([*cli_overrides(tmp_path, root), f"paths.output_dir={tmp_path / 'whole'}"]))
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in COMPARED:
        assert summary[key] == whole[key], key


@pytest.mark.slow
@pytest.mark.parametrize("name", ["oxford_pet", "drive"])
def test_a_prepared_public_set_resumes_exactly(tmp_path, name):
    """A preset of scripts/prepare.py (data=<name>, auto channels and normalization) on the tiny fake of its archive."""
    from tests.test_prepare import prepared

    root = prepared(name, tmp_path)
    tiny = [o for o in tiny_overrides(tmp_path) if not o.startswith(("data.", "paths.", "trainer.max_epochs"))]
    overrides = [
        *tiny, f"data={name}", f"data.root={root}", "data.batch_size=2", "data.split.val=0.34",
        "data.train_resize.height=32", "data.train_resize.width=32", "trainer.max_epochs=3",
    ]  # fmt: skip
    whole = train(compose_config([*overrides, f"paths.output_dir={tmp_path / 'whole'}"]))
    run_dir, kill = tmp_path / "stopped", signal_at(1, signal.SIGTERM)
    with pytest.raises(Interrupted, match=f"SIGTERM at step 2: saved {run_dir}"):
        train(compose_config([*overrides, f"paths.output_dir={run_dir}", *kill]))
    resumed = train(compose_config([*overrides, f"paths.output_dir={run_dir}", f"resume={run_dir}", *kill]))
    for key in COMPARED:
        assert resumed[key] == whole[key], key


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_kill_under_cpu_ddp_then_resume_equals_uninterrupted(tmp_path, signum):
    """Two gloo ranks, both sent the signal (as a scheduler does: the whole process group) once an epoch-end
    last.ckpt exists; resumed through the CLI. kill -9 leaves that checkpoint; on SIGTERM Lightning stops both
    ranks at the batch where rank 0 saw it, and the run saves there and exits with 143.

    Every save falls on an epoch's end (16 training images, 8 a batch on each of 2 ranks: one step an epoch, so
    also the save on SIGTERM, which comes at the batch where the ranks agree on it) and there is no augmentation:
    under DDP the training order is Lightning's DistributedSampler's (seeded per epoch) and flips would come from
    per-worker generators, which a checkpoint does not restore mid-epoch (docs/resume.md).
    """
    from tests.test_ddp import SPLIT, ddp_overrides

    ddp = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true"]
    one_step_an_epoch = f"data.source.counts={{train: 16, val: {SPLIT}, test: {SPLIT}}}"
    overrides = [*ddp, *ddp_overrides(tmp_path)[:-1], one_step_an_epoch, "trainer.max_epochs=8", "~augment"]
    overrides += ["callbacks.resumable_checkpoint.every_n_train_steps=2"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    whole = run_cli(*overrides, f"hydra.run.dir={tmp_path / 'whole'}", cwd=tmp_path, timeout=600, OMP_NUM_THREADS="1")
    assert whole.returncode == 0, whole.stderr[-3000:]

    run_dir = tmp_path / "run"
    command = [sys.executable, str(PROJECT_DIR / "train.py"), *overrides, f"hydra.run.dir={run_dir}"]
    process = subprocess.Popen(command, cwd=tmp_path, env=env, start_new_session=True)  # its own process group
    last, deadline = run_dir / "checkpoints" / "last.ckpt", time.monotonic() + 600
    while process.poll() is None and time.monotonic() < deadline and _saved_step(last) < 4:
        time.sleep(0.05)
    os.killpg(process.pid, signum)  # both ranks
    assert process.wait(timeout=300) == (143 if signum == signal.SIGTERM else -signal.SIGKILL)
    assert 2 <= _saved_step(last) < 8 and not (run_dir / "summary.json").exists()

    resumed = run_cli(*overrides, f"resume={run_dir}", cwd=tmp_path, timeout=600, OMP_NUM_THREADS="1")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = json.loads((tmp_path / "whole" / "summary.json").read_text())
    b = json.loads((run_dir / "summary.json").read_text())
    for key in COMPARED:
        assert a[key] == b[key], key
    assert_same_csv_log(run_dir, tmp_path / "whole")
