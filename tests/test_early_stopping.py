"""callbacks=early_stopping: training stops when val/iou stalls, and resuming (before or after the stop) is exact."""

from __future__ import annotations

import signal

import pytest
import torch

from seg.errors import Interrupted
from seg.run.train import train
from tests.conftest import compose_config, tiny_overrides
from tests.test_resume import COMPARED, net_weights, signal_at

# min_delta 1: no IoU can improve by 1, so the first validation sets the best and the next `patience` do not
# improve on it: with patience 1 the run stops after epoch 1 (8 steps), long before max_epochs.
STOPPING = ["callbacks=early_stopping", "callbacks.early_stopping.patience=1", "callbacks.early_stopping.min_delta=1.0"]
EPOCHS = ["trainer.max_epochs=6"]


@pytest.fixture(scope="module")
def stopped(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("stopped")
    return {**train(compose_config([*tiny_overrides(tmp), *STOPPING, *EPOCHS])), "overrides": tiny_overrides(tmp)}


def test_early_stopping_ends_the_run_when_val_iou_stalls(stopped):
    assert stopped["global_step"] == 8 and stopped["epochs"] == 2  # epochs 0 and 1 of 6
    state = torch.load(stopped["run_dir"] + "/checkpoints/last.ckpt", map_location="cpu", weights_only=False)
    (key,) = [k for k in state["callbacks"] if k.startswith("ResumableEarlyStopping")]
    assert state["callbacks"][key]["wait_count"] == 1 and state["callbacks"][key]["stopped_epoch"] == 1


def test_interrupted_before_the_stop_and_resumed_stops_at_the_same_point(tiny_cfg, tmp_path, stopped):
    run_dir = tmp_path / "interrupted"
    kill = signal_at(5, signal.SIGTERM)  # mid-epoch 1: epoch 0's validation has set the best score
    with pytest.raises(Interrupted):
        train(tiny_cfg(*STOPPING, *EPOCHS, f"paths.output_dir={run_dir}", *kill))
    resumed = train(tiny_cfg(*STOPPING, *EPOCHS, f"paths.output_dir={run_dir}", f"resume={run_dir}", *kill))
    for key in COMPARED:
        assert resumed[key] == stopped[key], key
    a, b = net_weights(stopped["best_checkpoint"]), net_weights(resumed["best_checkpoint"])
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resuming_a_run_that_stopped_trains_nothing_more(stopped):
    run_dir = stopped["run_dir"]
    again = train(compose_config([*stopped["overrides"], *STOPPING, *EPOCHS, f"resume={run_dir}"]))
    assert again["global_step"] == stopped["global_step"] == 8
    for key in COMPARED:
        assert again[key] == stopped[key], key
