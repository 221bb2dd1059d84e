"""A training split served as one pre-decoded tensor, a whole batch per index operation.

The per-item route (SegmentationFolder + PadCollate) normalizes, augments and converts every image on its own
and stacks them: host work per image, every step. When every training image is held in memory at one size and
the augmentation runs on the device (seg.data.augment.DeviceFlips), the split is decoded and normalized once into
`(N, C, H, W)` tensors and a batch is `index_select` of its rows, plus the per-image draws of the augmentation,
applied after the batch reaches the device (FolderDataModule.on_after_batch_transfer).

Order and draws come from the same EpochSampler as the per-item route (seg/data/sampler.py): a pure function of
(seed, epoch, position), so a resumed run continues exactly.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Dataset, Sampler

from seg.data.augment import DeviceFlips
from seg.data.folder import SegmentationFolder
from seg.data.sampler import EpochSampler

DRAWS = "augment"  # the batch key holding DeviceFlips' draws until they are applied


class TensorSplit(Dataset):
    """`split[[(index, seed), ...]]`: the batch of those items, `{"image", "mask", "valid", DRAWS}`."""

    def __init__(self, split: SegmentationFolder, augmentation: DeviceFlips) -> None:
        transform, split.transform = split.transform, None  # decoded and normalized, not augmented
        items = [split[i] for i in range(len(split))]
        split.transform = transform
        self.image = torch.stack([item["image"] for item in items])  # (N, C, H, W) float
        self.mask = torch.stack([item["mask"] for item in items])  # (N, 1, H, W) {0, 1}
        self.valid = torch.stack([item["valid"] for item in items])  # (N, 1, H, W) bool
        self.augmentation = augmentation

    def __len__(self) -> int:
        return len(self.image)

    def __getitem__(self, batch: list[tuple[int, int]]) -> dict[str, torch.Tensor]:
        rows = torch.tensor([index for index, _ in batch])
        return {
            "image": self.image.index_select(0, rows),
            "mask": self.mask.index_select(0, rows),
            "valid": self.valid.index_select(0, rows),
            DRAWS: self.augmentation.draw([seed for _, seed in batch]),  # (B, 3), applied on the device
        }


class EpochBatches(Sampler[list[tuple[int, int]]]):
    """An EpochSampler's items in full batches (the last partial one dropped), with its set_epoch and resume."""

    def __init__(self, items: EpochSampler, batch_size: int) -> None:
        self.items = items
        self.batch_size = batch_size

    def set_epoch(self, epoch: int) -> None:  # Lightning calls it on the loader's sampler before each epoch
        self.items.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        batch = []
        for item in self.items:
            batch.append(item)
            if len(batch) == self.batch_size:
                yield batch
                batch = []

    def __len__(self) -> int:
        return len(self.items) // self.batch_size
