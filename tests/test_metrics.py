"""IoU and Dice equal a hand computation, for both heads, accumulated over the whole split."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader
from torchmetrics.classification import BinaryJaccardIndex

from seg.heads import logits_with_decision
from seg.model.metrics import as_metric_input, segmentation_metrics
from seg.model.module import SegmentationModule
from tests.conftest import LOGITS, MASK, VALID, FixedLogits, build_head, head_names

# LOGITS, MASK (tests/conftest.py)
# By hand, foreground = logit >= 0:  image 0: pred 1 0 1 0 vs 1 1 0 0 -> TP 1, FP 1, FN 1
#                                    image 1: pred 1 1 0 0 vs 0 0 0 0 -> TP 0, FP 2, FN 0
TP, FP, FN = 1, 3, 1
HAND_IOU = TP / (TP + FP + FN)  # 0.2, dataset level: not the mean of per-image IoUs (0.333 and 0)
HAND_DICE = 2 * TP / (2 * TP + FP + FN)  # 0.333...


@pytest.mark.parametrize("name", head_names())
def test_metrics_on_hand_made_batch(name):
    head = build_head(name)
    metrics = segmentation_metrics("val")
    metrics.update(*as_metric_input(head.predict(logits_with_decision(head, LOGITS)), MASK, VALID))
    values = metrics.compute()
    assert values["val/iou"].item() == pytest.approx(HAND_IOU)
    assert values["val/dice"].item() == pytest.approx(HAND_DICE)


def test_raw_tanh_output_or_targets_would_fool_torchmetrics():
    """The traps the metric path avoids. When a batch's tanh output happens to lie in [0, 1], torchmetrics takes it
    for probabilities and thresholds tanh(z) at 0.5 (z > 0.55), losing foreground pixels with 0 < z < 0.55; and
    {-1, 1} targets are refused."""
    logits = torch.tensor([[[[0.2, 0.4, 1.0, 3.0]]]])  # all foreground by the decision rule z >= 0
    mask = torch.tensor([[[[0.0, 1.0, 1.0, 1.0]]]])
    pair = as_metric_input(build_head("tanh_mse").predict(logits), mask, torch.ones_like(mask, dtype=torch.bool))
    right = BinaryJaccardIndex()(*pair).item()
    wrong = BinaryJaccardIndex()(torch.tanh(logits), mask.long()).item()
    assert right == pytest.approx(3 / 4)  # TP 3, FP 1
    assert wrong == pytest.approx(2 / 3)  # tanh(0.2), tanh(0.4) < 0.5: TP 2, FN 1
    with pytest.raises(RuntimeError, match="only the following values"):
        BinaryJaccardIndex()(torch.tanh(logits), (2 * mask - 1).long())


@pytest.mark.parametrize("name", head_names())
def test_module_accumulates_over_batches_of_the_split(name):
    """Through Lightning, one image per batch: the logged val/iou is still the dataset-level hand value."""
    images = torch.arange(2).float().view(2, 1, 1, 1).expand(2, 1, 1, 4).clone()
    data = [{"image": images[i], "mask": MASK[i], "valid": VALID[i]} for i in range(2)]
    head = build_head(name)
    module = SegmentationModule(net=FixedLogits(head), head=head, optimizer=torch.optim.SGD)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    result = trainer.validate(module, DataLoader(data, batch_size=1), verbose=False)[0]
    assert result["val/iou"] == pytest.approx(HAND_IOU)
    assert result["val/dice"] == pytest.approx(HAND_DICE)


class EpochMetrics(L.Callback):
    """Its own IoU and Dice over each training epoch's batches, from the logits the training steps return."""

    def __init__(self) -> None:
        self.metrics = segmentation_metrics("train")
        self.epochs: list[dict[str, float]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        decision = pl_module.head.predict(outputs["logits"])
        self.metrics.update(*as_metric_input(decision, batch["mask"], batch["valid"]))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.epochs.append({key: float(value) for key, value in self.metrics.compute().items()})
        self.metrics.reset()


def test_train_iou_and_dice_are_each_epochs_own(tiny_cfg):
    """Logged once per epoch (not as metric objects at every step): over that epoch's batches, none before."""
    from seg.run.train import build
    from tests.conftest import logged_rows

    cfg = tiny_cfg("trainer.max_epochs=3", "optimizer.lr=1e-2")
    module, datamodule, trainer = build(cfg)
    expected = EpochMetrics()
    trainer.callbacks.append(expected)
    trainer.fit(module, datamodule=datamodule)
    rows = [row for row in logged_rows(Path(cfg.paths.output_dir)) if row["train/iou"]]
    assert [int(row["epoch"]) for row in rows] == [0, 1, 2]
    for row, own in zip(rows, expected.epochs, strict=True):
        assert float(row["train/iou"]) == pytest.approx(own["train/iou"], rel=1e-6)
        assert float(row["train/dice"]) == pytest.approx(own["train/dice"], rel=1e-6)
    assert len({round(e["train/iou"], 6) for e in expected.epochs}) == 3  # the epochs differ: a real comparison
    assert float(trainer.callback_metrics["train/iou"]) == expected.epochs[-1]["train/iou"]
