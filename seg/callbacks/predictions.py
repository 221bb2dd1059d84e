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

GREEN, RED, BLUE = (0.0, 1.0, 0.0), (1.0, 0.0, 0.0), (0.0, 0.0, 1.0)
ALPHA = 0.5  # overlay opacity: the image stays visible under the colour


class PredictionImages(L.Callback):
    """After each validation during fit: one no-grad forward pass on the first `num_images` validation images.

    The picture goes to every TensorBoardLogger (tag `val/predictions`) and, whatever the loggers, to
    `dirpath/epoch_XXX.png`. `scale` enlarges each pixel to a `scale`-pixel square so small images stay legible.
    """

    def __init__(self, *, dirpath: str | Path, num_images: int = 6, scale: int = 4) -> None:
        super().__init__()
        self.dirpath = Path(dirpath)
        self.num_images = num_images
        self.scale = scale
        self._batch: dict[str, Tensor] | None = None  # the fixed images, on the CPU, gathered once

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Only during fit: the final trainer.validate() re-scores the best checkpoint, not a new epoch.
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING or not trainer.is_global_zero:
            return
        if self._batch is None:
            self._batch = first_images(trainer.val_dataloaders, self.num_images)
        picture = self.render(pl_module)  # (3, H', W') float in [0, 1]
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image("val/predictions", picture, global_step=trainer.global_step)
        self.dirpath.mkdir(parents=True, exist_ok=True)
        matplotlib.image.imsave(
            self.dirpath / f"epoch_{trainer.current_epoch:03d}.png", picture.permute(1, 2, 0).numpy()
        )

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
        return grid(rows, self.scale)


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


def overlay(rgb: Tensor, where: Tensor, colour: tuple[float, float, float]) -> Tensor:
    """(3, H, W) rgb with `colour` blended in at the (1, H, W) bool `where`."""
    tint = torch.tensor(colour, dtype=rgb.dtype).view(3, 1, 1)
    return torch.where(where, (1 - ALPHA) * rgb + ALPHA * tint, rgb)


def prediction_overlay(rgb: Tensor, truth: Tensor, predicted: Tensor) -> Tensor:
    rgb = overlay(rgb, predicted & truth, GREEN)  # correct foreground
    rgb = overlay(rgb, predicted & ~truth, RED)  # false positive
    return overlay(rgb, ~predicted & truth, BLUE)  # missed


def grid(rows: list[list[Tensor]], scale: int, gap: int = 2) -> Tensor:
    """Tiles (3, H, W) -> one (3, H', W') picture, each pixel `scale` x `scale`, white `gap` pixels between tiles."""
    tiles = [[F.pad(tile, (0, gap, 0, gap), value=1.0) for tile in row] for row in rows]
    picture = torch.cat([torch.cat(row, dim=2) for row in tiles], dim=1)[:, :-gap, :-gap]
    return picture.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2)
