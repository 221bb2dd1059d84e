"""The NaN guard: on the CPU it stops before the bad step's backward; deferred (as on an accelerator, where a check
every step would sync the device) it skips the bad step's update on the device and stops at the next check."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from seg.errors import TrainingDiverged
from seg.model.module import SegmentationModule
from seg.run.callbacks import StopOnNonFiniteLoss
from tests.conftest import build_head


class PoisonedNet(torch.nn.Module):
    """A 1x1 conv whose output is NaN for the images marked bad (first pixel > 100)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 1)

    def forward(self, image):
        out = self.conv(image)
        return torch.where(image[:, :1, :1, :1] > 100, torch.full_like(out, float("nan")), out)


def fit(bad_step: int, guard: StopOnNonFiniteLoss, steps: int = 8, save_to=None):
    """Train one epoch of one-image batches until the guard stops it: (module, the error, trainer)."""
    images = torch.rand(steps, 1, 4, 4)
    images[bad_step, 0, 0, 0] = 1000.0  # batch `bad_step` gives a NaN loss
    data = [
        {"image": images[i], "mask": (images[i] > 0.5).float(), "valid": torch.ones(1, 4, 4, dtype=torch.bool)}
        for i in range(steps)
    ]
    module = SegmentationModule(net=PoisonedNet(), head=build_head("sigmoid_bce"), optimizer=torch.optim.SGD)
    module.optimizer_factory = lambda params: torch.optim.SGD(params, lr=0.1)

    class SaveAfterTheBadStep(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if save_to is not None and batch_idx == bad_step + 1:
                trainer.save_checkpoint(save_to)

    trainer = L.Trainer(
        accelerator="cpu", max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, callbacks=[guard, SaveAfterTheBadStep()], limit_val_batches=0,
    )  # fmt: skip
    with pytest.raises(TrainingDiverged) as stopped:
        trainer.fit(module, DataLoader(data, batch_size=1))
    return module, stopped.value, trainer


def test_on_the_cpu_the_guard_stops_at_the_bad_step_before_its_backward():
    module, error, trainer = fit(bad_step=3, guard=StopOnNonFiniteLoss())
    assert "train/loss is nan at step 3" in str(error) and trainer.global_step == 3
    assert all(torch.isfinite(p).all() for p in module.parameters())


def test_deferred_the_bad_update_is_skipped_on_the_device_and_the_run_stops_at_the_next_check():
    module, error, trainer = fit(bad_step=3, guard=StopOnNonFiniteLoss(deferred=True, check_every_n_steps=5))
    assert "train/loss was not finite at step 3 (its update was skipped)" in str(error)
    assert trainer.global_step == 5  # read at the check, not at the bad step: no sync in between
    assert all(torch.isfinite(p).all() for p in module.parameters())  # no NaN ever reached the weights


def test_deferred_no_checkpoint_is_written_after_a_skipped_step(tmp_path):
    guard = StopOnNonFiniteLoss(deferred=True, check_every_n_steps=1000)
    module, error, trainer = fit(bad_step=2, guard=guard, save_to=tmp_path / "after.ckpt")
    assert "not finite at step 2" in str(error) and trainer.global_step == 4  # the save was the check
    assert not (tmp_path / "after.ckpt").exists()


def test_deferred_the_end_of_training_is_a_check():
    module, error, trainer = fit(bad_step=6, guard=StopOnNonFiniteLoss(deferred=True, check_every_n_steps=1000))
    assert "not finite at step 6" in str(error) and trainer.global_step == 8


def test_deferred_no_weights_only_best_checkpoint_holds_a_skipped_step(tmp_path):
    """best.ckpt is saved weights-only, which calls no callback's on_save_checkpoint: the end of validation is the
    check instead, before ModelCheckpoint writes."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    images = torch.rand(8, 1, 4, 4)
    images[2, 0, 0, 0] = 1000.0  # step 2's loss is NaN
    data = [
        {"image": image, "mask": (image > 0.5).float(), "valid": torch.ones(1, 4, 4, dtype=torch.bool)}
        for image in images
    ]
    module = SegmentationModule(net=PoisonedNet(), head=build_head("sigmoid_bce"), optimizer=torch.optim.SGD)
    module.optimizer_factory = lambda params: torch.optim.SGD(params, lr=0.1)
    best = ModelCheckpoint(dirpath=tmp_path, filename="best", monitor="val/iou", mode="max", save_weights_only=True)
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[StopOnNonFiniteLoss(deferred=True, check_every_n_steps=1000), best], num_sanity_val_steps=0,
    )  # fmt: skip
    valid_images = DataLoader(data[3:], batch_size=5)  # no poisoned image: validation itself is finite
    with pytest.raises(TrainingDiverged, match="not finite at step 2"):
        trainer.fit(module, DataLoader(data, batch_size=1), valid_images)
    assert trainer.global_step == 8 and not (tmp_path / "best.ckpt").exists()


@pytest.mark.slow
def test_the_advice_works_resume_after_a_nan_stop_at_a_lower_lr(tiny_cfg, tmp_path, monkeypatch):
    """The stop's message names resume_allow=[optimizer.lr]: the run goes on from last.ckpt at half the lr."""
    from seg.heads import SigmoidBCE
    from seg.run.train import train
    from tests.conftest import logged_rows

    original, train_calls = SigmoidBCE.loss, []

    def loss(self, logits, mask, valid=None):
        if torch.is_grad_enabled():
            train_calls.append(1)
            if len(train_calls) == 6:
                return original(self, logits, mask, valid) * float("nan")
        return original(self, logits, mask, valid)

    every = "callbacks.resumable_checkpoint.every_n_train_steps=4"
    whole = train(tiny_cfg(every, f"paths.output_dir={tmp_path / 'whole'}"))
    monkeypatch.setattr(SigmoidBCE, "loss", loss)
    with pytest.raises(TrainingDiverged, match=r"resume=\S+ optimizer.lr=<lower> resume_allow=\[optimizer.lr\]"):
        train(tiny_cfg(every))
    monkeypatch.setattr(SigmoidBCE, "loss", original)
    run_dir = tmp_path / "run"
    resumed = train(tiny_cfg(every, f"resume={run_dir}", "optimizer.lr=3e-3", "resume_allow=[optimizer.lr]"))
    assert resumed["global_step"] == whole["global_step"] == 12

    def lrs(directory):
        return {int(r["step"]): float(r["lr-AdamW"]) for r in logged_rows(directory) if r.get("lr-AdamW")}

    before, after = lrs(Path(whole["run_dir"])), lrs(run_dir)
    resumed_steps = [s for s in after if s >= 5]  # the steps after the resume at step 4
    assert len(resumed_steps) >= 5, (before, after)
    assert all(after[s] == pytest.approx(before[s] / 2) for s in resumed_steps), (before, after)
