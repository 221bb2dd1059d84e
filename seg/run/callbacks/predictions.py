"""What the validation numbers look like: a fixed set of validation images with their ground truth and the prediction.

Each row of the picture is one image: the image | its ground truth in green | the head's decision, with correct
foreground in green, false positives in red and missed foreground in blue. Pixels an overlay does not colour keep
the image's grey, so the picture shows where the errors are and on what.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import matplotlib.image
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor

from seg.inference.overlay import ALPHA, BLUE, GREEN, RED, overlay

__all__ = ["ALPHA", "PictureHistory", "PredictionImages"]
GAP = 8  # white pixels between tiles


class PredictionImages(L.Callback):
    """After the validations of every `every_n_epochs`-th epoch (0, n, 2n, ...) and after the last validation of
    the run: one no-grad forward pass on the first `num_images` validation images, drawn as one picture.

    Each tile is drawn at about `tile_size` pixels on its longer side whatever the image size: a 64 px image is
    enlarged 4x (each pixel a 4x4 square, so pixels stay visible), a 565x584 DRIVE image is shrunk to 248x256.
    The picture of the latest drawn validation is always on disk as `dirpath/epoch_XXX.png`; of the earlier ones
    at most `max_pictures` are kept, evenly spread (`PictureHistory`), and only those go to TensorBoard (tag
    `val/predictions`), whose event file cannot forget: a 300-epoch run drawing every epoch keeps 20 files and
    logs 59 pictures. The last validation's picture is drawn when training ends (`on_train_end`), with the
    weights that validation scored: nothing has trained since (when something has, e.g. max_steps stopped
    training mid-epoch, it is not drawn).
    """

    def __init__(
        self,
        *,
        dirpath: str | Path,
        num_images: int = 6,
        tile_size: int = 256,
        every_n_epochs: int = 1,
        max_pictures: int = 20,
    ) -> None:
        super().__init__()
        self.dirpath = Path(dirpath)
        self.num_images = num_images
        self.tile_size = tile_size
        self.every_n_epochs = max(every_n_epochs, 1)
        self.history = PictureHistory(max_pictures)
        self._batch: dict[str, Tensor] | None = None  # the fixed images, on the CPU, gathered once
        self._latest: int | None = None  # epoch of the newest picture; removed later unless history keeps it
        self._undrawn: tuple[int, int] | None = None  # (epoch, step) of the latest validation, when not drawn

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Only during fit: the final trainer.validate() re-scores the best checkpoint, not a new epoch.
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING or not trainer.is_global_zero:
            return
        epoch = trainer.current_epoch
        if epoch % self.every_n_epochs:
            self._undrawn = (epoch, trainer.global_step)
            return
        self._undrawn = None
        self.draw(trainer, pl_module, epoch)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._undrawn is not None and self._undrawn[1] == trainer.global_step and trainer.is_global_zero:
            self.draw(trainer, pl_module, self._undrawn[0])  # the last validation, off the schedule
        self._undrawn = None

    def draw(self, trainer: L.Trainer, pl_module: L.LightningModule, epoch: int) -> None:
        """Render the picture of `epoch`'s validation, save it, log it to TensorBoard if history keeps it."""
        if self._batch is None:
            self._batch = first_images(trainer.val_dataloaders, self.num_images)
        picture = self.render(pl_module)  # (3, H', W') float in [0, 1]
        kept, dropped = self.history.add(epoch)
        if kept:
            for logger in trainer.loggers:
                if isinstance(logger, TensorBoardLogger):
                    logger.experiment.add_image("val/predictions", picture, global_step=trainer.global_step)
        self.dirpath.mkdir(parents=True, exist_ok=True)
        if self._latest not in (None, epoch, *self.history.kept):
            dropped.append(self._latest)
        for old in dropped:
            self._path(old).unlink(missing_ok=True)
        self._latest = epoch
        matplotlib.image.imsave(self._path(epoch), picture.permute(1, 2, 0).numpy())

    def state_dict(self) -> dict:  # a resumed run goes on thinning the same history
        return {"stride": self.history.stride, "kept": list(self.history.kept)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history.stride, self.history.kept = state_dict["stride"], list(state_dict["kept"])

    def _path(self, epoch: int) -> Path:
        return self.dirpath / f"epoch_{epoch:03d}.png"

    @torch.no_grad()
    def render(self, pl_module: L.LightningModule) -> Tensor:
        image, mask = self._batch["image"], self._batch["mask"]
        was_training = pl_module.training
        pl_module.eval()
        decision = pl_module.head.predict(pl_module(image.to(pl_module.device))).cpu()  # (N, 1, H, W) bool
        pl_module.train(was_training)
        rows = [
            [grey, overlay(grey, truth, GREEN), prediction_overlay(grey, truth, predicted)]
            for grey, truth, predicted in zip(display(image), mask.bool(), decision, strict=True)
        ]
        return grid(rows, self.tile_size)


def first_images(dataloader, count: int) -> dict[str, Tensor]:
    """The first `count` images and masks of the split: the same ones at every validation.

    Read from the dataset, not the loader's batches: under DDP rank 0's loader holds only its share of the split.
    """
    dataset = dataloader.dataset
    batch = dataloader.collate_fn([dataset[i] for i in range(min(count, len(dataset)))])
    return {"image": batch["image"], "mask": batch["mask"]}


def display(image: Tensor) -> Tensor:
    """(N, C, H, W) normalized images -> (N, 3, H, W) in [0, 1], each stretched to its own range (display only)."""
    shown = image if image.shape[1] == 3 else image[:, :1].expand(-1, 3, -1, -1)
    low = shown.amin(dim=(1, 2, 3), keepdim=True)
    high = shown.amax(dim=(1, 2, 3), keepdim=True)
    return (shown - low) / (high - low).clamp_min(1e-6)


def prediction_overlay(rgb: Tensor, truth: Tensor, predicted: Tensor) -> Tensor:
    rgb = overlay(rgb, predicted & truth, GREEN)  # correct foreground
    rgb = overlay(rgb, predicted & ~truth, RED)  # false positive
    return overlay(rgb, ~predicted & truth, BLUE)  # missed


def fit_tile(tile: Tensor, tile_size: int) -> Tensor:
    """(3, H, W) -> about `tile_size` px on the longer side: enlarged by a whole factor (pixels as squares), or
    shrunk by area averaging when larger."""
    longest = max(tile.shape[1:])
    if longest <= tile_size:
        factor = tile_size // longest
        return tile.repeat_interleave(factor, dim=1).repeat_interleave(factor, dim=2)
    size = [max(1, round(side * tile_size / longest)) for side in tile.shape[1:]]
    return F.interpolate(tile[None], size=size, mode="area")[0]


def grid(rows: list[list[Tensor]], tile_size: int, gap: int = GAP) -> Tensor:
    """Tiles (3, H, W) -> one (3, H', W') picture, each tile fitted to `tile_size`, white `gap` pixels between."""
    tiles = [[F.pad(fit_tile(tile, tile_size), (0, gap, 0, gap), value=1.0) for tile in row] for row in rows]
    return torch.cat([torch.cat(row, dim=2) for row in tiles], dim=1)[:, :-gap, :-gap]


class PictureHistory:
    """Which epochs' pictures to keep: those on a grid of step `stride`, the stride doubling (and every other
    kept picture dropped) whenever more than `limit` would be kept. The kept ones stay evenly spread over the
    run, however long it is, and their number stays between limit / 2 and limit."""

    def __init__(self, limit: int) -> None:
        self.limit = max(limit, 1)
        self.stride = 1
        self.kept: list[int] = []

    def add(self, epoch: int) -> tuple[bool, list[int]]:
        """Whether `epoch` is kept, and the epochs kept so far that are dropped now."""
        if epoch % self.stride:
            return False, []
        self.kept.append(epoch)
        dropped: list[int] = []
        while len(self.kept) > self.limit:
            self.stride *= 2
            dropped += [e for e in self.kept if e % self.stride]
            self.kept = [e for e in self.kept if e % self.stride == 0]
        return epoch in self.kept, dropped
