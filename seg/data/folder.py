"""One split of a folder dataset as a torch Dataset: decoded, mask policy applied, normalized.

The files were checked by the validation pass (seg/data/scan.py) before this is built, so reading here
does not expect surprises; a file changed since then still fails with a DataError naming it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from seg.data.augment import seed_augmentation
from seg.data.channels import channel_mismatch
from seg.data.layout import Pair
from seg.data.masks import IGNORE, MaskPolicy
from seg.data.reading import normalize, read_image, read_mask, to_unit_range
from seg.errors import DataError


class SegmentationFolder(Dataset):
    """Items `{"image": (C, H, W) float normalized, "mask": (1, H, W) float {0,1}, "valid": (1, H, W) bool}`.

    `valid` is False where the mask policy ignores a pixel. `transform` (training: resize/crop, then the
    augmentation) sees the image as float32 in [0, 1] and the mask with ignored pixels still marked, so a
    crop or flip moves both together. With `cache`, every pair is decoded once here and kept in memory.
    """

    def __init__(
        self,
        pairs: Sequence[Pair],
        *,
        policy: MaskPolicy,
        mean: Sequence[float],
        std: Sequence[float],
        transform=None,
        label_noise=None,
        cache: bool = False,
    ) -> None:
        self.pairs = list(pairs)
        self.policy = policy
        self.mean = np.asarray(mean, np.float32)  # per channel, pixel values scaled to [0, 1]
        self.std = np.asarray(std, np.float32)
        if self.mean.shape != self.std.shape:
            raise DataError(
                f"data.mean has {len(self.mean)} values but data.std has {len(self.std)}; give one of each per channel"
            )
        self.transform = transform
        self.label_noise = label_noise  # (mask, index) -> mask; training split only
        self.cached = [self._read(i) for i in range(len(self.pairs))] if cache else None

    def __len__(self) -> int:
        return len(self.pairs)

    def _read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image_path, mask_path = self.pairs[index]
        image = read_image(image_path)
        if wrong := channel_mismatch(
            image_path, image.shape[2], len(self.mean), against="data.mean/std have", fix="give one value per channel"
        ):
            raise DataError(wrong)
        mask = self.policy.decode(read_mask(mask_path), mask_path)
        if mask.shape != image.shape[:2]:
            raise DataError(
                f"{mask_path}: mask size {mask.shape[::-1]} differs from its image's {image.shape[1::-1]}; masks must match their image"
            )
        if self.label_noise is not None:
            noisy = self.label_noise((mask == 1).astype(np.uint8), index)
            mask = np.where(mask == IGNORE, IGNORE, noisy).astype(np.uint8)
        return image, mask

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        # (index, augment_seed) from the training sampler: the item's augmentation is a function of the
        # seed alone, whatever was drawn before it (resumable, worker-independent; seg/data/sampler.py).
        index, augment_seed = key if isinstance(key, tuple) else (key, None)
        image, mask = self.cached[index] if self.cached is not None else self._read(index)
        image = to_unit_range(image)  # (H, W, C) float32: 8- and 16-bit alike, and what albumentations takes
        if self.transform is not None:
            if augment_seed is not None:
                seed_augmentation(self.transform, augment_seed)
            out = self.transform(image=image, mask=mask)  # nearest-neighbour for the mask: values stay exact
            image, mask = out["image"], out["mask"]
        image = normalize(image, self.mean, self.std)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),  # (C, H, W)
            "mask": torch.from_numpy((mask == 1)[None].astype(np.float32)),  # (1, H, W) {0, 1}
            "valid": torch.from_numpy((mask != IGNORE)[None]),  # (1, H, W) bool
        }
