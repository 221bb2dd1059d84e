"""No training step makes the host wait for the device.

On a GPU, `.item()`, `.tolist()`, a tensor's truth value, data-dependent shapes (boolean indexing, `nonzero`,
`masked_select`) and copies to the CPU each stall the host until the device has caught up: the step is then as
slow as host and device added, not the slower of the two. On the CPU nothing stalls, so the test cannot time it;
it records those calls instead (torch.overrides.TorchFunctionMode sees every tensor method and torch function
called from Python, the project's and the libraries') while real training steps run, and fails on any.

The window is each training step from Lightning's `on_train_batch_start` to the last `on_train_batch_end`:
forward, loss, metric updates, logging, backward, optimizer and scheduler steps and every callback's batch hooks,
with the NaN guard as it runs on an accelerator (deferred). The reads once per logging interval and per epoch
happen outside it, as intended.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Checkpoint
from torch.overrides import TorchFunctionMode

from seg.model.metrics import as_metric_input, segmentation_metrics
from seg.run.train import build
from tests.conftest import compose_config, tiny_overrides

# Tensor methods and torch functions that make the host wait for a device tensor's value or size.
SYNCS = {
    "item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__", "__len__", "__iter__",
    "nonzero", "nonzero_static", "argwhere", "masked_select", "unique", "unique_consecutive", "bincount",
}  # fmt: skip


def _bool_index(args) -> bool:
    index = args[1] if len(args) > 1 else None
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts)


class SyncRecorder(TorchFunctionMode):
    """Notes every sync-forcing call while active, with where it came from, except on tensors `host_side` owns."""

    def __init__(self, host_side: Callable[[torch.Tensor], bool] = lambda tensor: False) -> None:
        super().__init__()
        self.host_side = host_side
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        syncs = name in SYNCS or (name in ("__getitem__", "__setitem__") and _bool_index(args))
        if syncs and not (args and isinstance(args[0], torch.Tensor) and self.host_side(args[0])):
            caller = next((f for f in reversed(traceback.extract_stack()[:-1]) if "/torch/" not in f.filename), None)
            self.calls.append(f"{name} at {Path(caller.filename).name}:{caller.lineno} ({caller.name})")
        return func(*args, **(kwargs or {}))


def optimizer_step_counts(trainer: L.Trainer) -> Callable[[torch.Tensor], bool]:
    """torch.optim keeps each parameter's step count as a CPU tensor (unless fused or capturable), also on a GPU,
    and reads it with .item(): a host value, no device sync."""

    def host_side(tensor: torch.Tensor) -> bool:
        return any(
            state.get("step") is tensor for optimizer in trainer.optimizers for state in optimizer.state.values()
        )

    return host_side


class StepStart(L.Callback):
    def __init__(self, recorder: SyncRecorder) -> None:
        self.recorder = recorder
        self.steps = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.recorder.host_side = optimizer_step_counts(trainer)
        self.recorder.__enter__()
        self.steps += 1


class StepEnd(Checkpoint):
    """A Checkpoint only so that Lightning runs it after every other callback, ModelCheckpoint included."""

    def __init__(self, recorder: SyncRecorder) -> None:
        self.recorder = recorder

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.recorder.__exit__(None, None, None)


def test_the_recorder_sees_each_kind_of_sync():
    x = torch.rand(8)
    recorder = SyncRecorder()
    with recorder:
        x.sum().item(), x.tolist(), bool(x[0] > 0), x[x > 0.5], x.nonzero(), x.cpu(), float(x[0])
        metrics_with_ignore_index = __import__("torchmetrics").classification.BinaryJaccardIndex(ignore_index=-1)
        metrics_with_ignore_index.update(torch.tensor([1, 0, 1]), torch.tensor([1, -1, 0]))  # the old metrics
    names = [call.split()[0] for call in recorder.calls]
    for name in ("item", "tolist", "__bool__", "__getitem__", "nonzero", "cpu", "__float__"):
        assert name in names, (name, recorder.calls)
    assert len(names) > 7  # the last line added its own boolean indexing


def test_the_metric_update_is_free_of_syncs():
    metrics = segmentation_metrics("train")
    prediction = torch.rand(2, 1, 8, 8) > 0.5
    mask = (torch.rand(2, 1, 8, 8) > 0.5).float()
    valid = torch.rand(2, 1, 8, 8) > 0.2
    with SyncRecorder() as recorder:
        metrics.update(*as_metric_input(prediction, mask, valid))
    assert recorder.calls == []


@pytest.mark.parametrize("augment", ["flips", "device_flips"])
def test_training_steps_force_no_host_sync(tmp_path, augment):
    overrides = [o for o in tiny_overrides(tmp_path) if o != "~callbacks.progress_bar"]  # the default callbacks
    cfg = compose_config(
        [*overrides, f"augment={augment}", "trainer.max_epochs=2", "+callbacks.nan_guard.deferred=true"]
    )
    module, datamodule, trainer = build(cfg)
    recorder = SyncRecorder()
    start = StepStart(recorder)
    trainer.callbacks = [start, *trainer.callbacks, StepEnd(recorder)]
    trainer.fit(module, datamodule=datamodule)
    assert start.steps == trainer.global_step == 8  # 32 images in batches of 8, 2 epochs: the window was live
    assert recorder.calls == [], "\n".join(recorder.calls)
