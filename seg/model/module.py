"""The LightningModule: one network, one head, one `_step` shared by train, validation and test."""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch
from torch import Tensor, nn

from seg.heads import Head
from seg.model.metrics import as_metric_input, segmentation_metrics

OptimizerFactory = Callable[..., torch.optim.Optimizer]  # partial: params -> optimizer
CONFIG_KEY = "seg_config"  # where each checkpoint holds its run's config (read by seg/inference/checkpoint.py)
TRAIN_COUNTS_KEY = "train_metric_counts"  # the training epoch's counts so far (summed over DDP ranks)
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]  # partial: (optimizer, total_steps) -> scheduler


class SegmentationModule(L.LightningModule):
    """Trains `net` with `head`. Batches are `image (B, C, H, W) float`, `mask (B, 1, H, W) float {0,1}` and
    `valid (B, 1, H, W) bool`: the pixels that count (not ignored by the mask policy, not padding)."""

    def __init__(
        self,
        *,
        net: nn.Module,
        head: Head,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        config: dict | None = None,
        last_layer_lr_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.net = net
        self.head = head
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.last_layer_lr_scale = last_layer_lr_scale
        self.config = config  # the run's resolved config, stored in every checkpoint (seg/inference/checkpoint.py)
        # One metric collection per stage: Lightning resets and syncs each at its epoch end.
        self.train_metrics = segmentation_metrics("train")
        self.val_metrics = segmentation_metrics("val")
        self.test_metrics = segmentation_metrics("test")

    def forward(self, image: Tensor) -> Tensor:
        return self.net(image)  # (B, out_channels, H, W) logits

    def _step(self, batch: dict[str, Tensor], stage: str) -> dict[str, Tensor]:
        image, mask = batch["image"], batch["mask"]
        valid = batch[
            "valid"
        ]  # False where the mask policy ignores a pixel or the collate padded (seg/data/collate.py)
        logits = self(image)
        loss = self.head.loss(logits, mask, valid)
        metrics = getattr(self, f"{stage}_metrics")
        with torch.no_grad():
            metrics.update(*as_metric_input(self.head.predict(logits), mask, valid))
        on_step = stage == "train"  # train/loss: a curve of logged steps; val and test: one mean per epoch
        # Not on the progress bar during training: the bar turns its values into Python floats after every batch,
        # a device sync per step on a GPU. Under DDP the val/test loss is averaged over ranks once per epoch.
        self.log(
            f"{stage}/loss",
            loss,
            on_step=on_step,
            on_epoch=not on_step,
            batch_size=image.shape[0],
            prog_bar=not on_step,
            sync_dist=not on_step,
        )
        if stage != "train":  # training's once per epoch, in on_train_epoch_end
            self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=True)
        return {"loss": loss, "logits": logits.detach()}  # callbacks (diagnostics, pictures) read the logits

    def on_train_epoch_end(self) -> None:
        # The epoch's train/iou and train/dice, as logging the metric objects at every step would give them: that
        # cost ~3 ms a step (Lightning moves each logged metric object to the device at every self.log).
        if any(metric.update_count for metric in self.train_metrics.values()):  # none when no batch trained
            # compute() already gathers the counts of every DDP rank (torchmetrics); sync_dist only says so to
            # Lightning, which otherwise warns under DDP: one all-reduce of equal values per epoch.
            self.log_dict(self.train_metrics.compute(), sync_dist=True)
        self.train_metrics.reset()

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return self._step(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return self._step(batch, "test")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.config is not None:
            checkpoint[CONFIG_KEY] = self.config
        # A run resumed from a checkpoint saved mid-epoch logs that epoch's train/iou and train/dice over all its
        # batches, as an uninterrupted run does, not over those after the resume only. Every rank saves (Lightning
        # assembles the checkpoint on each), so the gather is a collective all of them reach.
        if any(metric.update_count for metric in self.train_metrics.values()):
            checkpoint[TRAIN_COUNTS_KEY] = {
                name: {state: self._summed_over_ranks(value) for state, value in metric.metric_state.items()}
                for name, metric in self.train_metrics.items()
            }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        counts = checkpoint.get(TRAIN_COUNTS_KEY)
        if not counts:
            return
        nothing = torch.zeros(0, dtype=torch.long, device=self.device)
        self.train_metrics.update(nothing, nothing)  # counts nothing; marks the epoch's metrics as updated
        if self.global_rank != 0:
            return  # the saved counts are every rank's sum: held once, by rank 0, as compute() sums the ranks
        for name, metric in self.train_metrics.items():
            for state, value in counts[name].items():
                setattr(metric, state, value.to(getattr(metric, state).device))

    def _summed_over_ranks(self, value: Tensor) -> Tensor:
        gathered = self.all_gather(value.detach())  # (world_size, ...) under DDP, `value` itself in one process
        return (gathered.sum(0) if self.trainer.world_size > 1 else gathered).cpu()

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=self.parameter_groups())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer, total_steps=int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def parameter_groups(self):
        """All parameters at the optimizer's lr; with `last_layer_lr_scale` s != 1, the final 1x1 convolution in a
        group of its own at lr x s and weight decay / s. The product lr x weight decay, AdamW's decoupled shrink
        per step, stays the same: sigmoid_mse with the last layer started x2 and this group at s = 2 is then
        tanh_mse exactly under AdamW (docs/heads.md "Exact equivalences"), the atlas's step-x2 control."""
        if self.last_layer_lr_scale == 1.0:
            return self.parameters()
        last = list(self.net.segmentation_head.parameters())
        body = [p for p in self.parameters() if all(p is not q for q in last)]
        configured = getattr(self.optimizer_factory, "keywords", {})  # a partial: the optimizer's lr, weight decay
        scale = self.last_layer_lr_scale
        group = {"params": last, "lr": configured["lr"] * scale}
        if "weight_decay" in configured:
            group["weight_decay"] = configured["weight_decay"] / scale
        return [{"params": body}, group]
