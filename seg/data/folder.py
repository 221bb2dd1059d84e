"""Reading a split folder: `<split>/images/*` paired by file stem with `<split>/masks/*`.

The contract is checked here, at the edge, once: every image has a mask and every mask an image, files
decode, a mask has its image's size and only the values {0, 1} or {0, 255}, and an image has the channel
count the model expects. A violation raises `DataError` naming the file and the fix.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from seg.data.augment import seed_augmentation
from seg.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}


def list_pairs(split_dir: Path) -> list[tuple[Path, Path]]:
    """(image, mask) paths of a split, sorted by stem, or a DataError naming what does not pair."""
    image_dir, mask_dir = split_dir / "images", split_dir / "masks"
    for folder in (image_dir, mask_dir):
        if not folder.is_dir():
            raise DataError(f"{folder}: folder not found; a split needs images/ and masks/ side by side")
    images = _by_stem(image_dir)
    masks = _by_stem(mask_dir)
    if not images:
        raise DataError(f"{image_dir}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
    unpaired_images = sorted(images.keys() - masks.keys())
    unpaired_masks = sorted(masks.keys() - images.keys())
    if unpaired_images:
        raise DataError(
            f"{images[unpaired_images[0]]}: no mask with this stem in {mask_dir} ({len(unpaired_images)} images unpaired); add the masks or remove the images"
        )
    if unpaired_masks:
        raise DataError(
            f"{masks[unpaired_masks[0]]}: no image with this stem in {image_dir} ({len(unpaired_masks)} masks unpaired); add the images or remove the masks"
        )
    return [(images[stem], masks[stem]) for stem in sorted(images)]


def _by_stem(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if path.stem in found:
            raise DataError(f"{path}: two files share the stem '{path.stem}' ({found[path.stem].name}); keep one")
        found[path.stem] = path
    return found


def read_image(path: Path, in_channels: int) -> np.ndarray:
    """(H, W, C) uint8 image with C == in_channels."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataError(f"{path}: cannot be decoded as an image; replace or remove the file")
    if image.ndim == 2:
        image = image[:, :, None]
    channels = image.shape[2]
    if channels != in_channels:
        raise DataError(
            f"{path}: has {channels} channel(s) but the model takes {in_channels}; set data.in_channels={channels} or convert the images"
        )
    if image.dtype != np.uint8:
        raise DataError(f"{path}: {image.dtype} pixels; this loader reads 8-bit images")
    if channels == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return image


def read_mask(path: Path, image_shape: tuple[int, ...]) -> np.ndarray:
    """(H, W) uint8 {0, 1} mask; {0, 255} files are accepted and mapped to {0, 1}."""
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise DataError(f"{path}: cannot be decoded as a mask image; replace or remove the file")
    if mask.ndim != 2:
        raise DataError(f"{path}: mask has {mask.shape[2]} channels; masks must be single-channel (grey) images")
    if mask.shape != image_shape[:2]:
        raise DataError(
            f"{path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is {image_shape[1]}x{image_shape[0]}; masks must match their image's size"
        )
    values = np.unique(mask)
    if not (set(values.tolist()) <= {0, 1} or set(values.tolist()) <= {0, 255}):
        raise DataError(
            f"{path}: mask values {values[:8].tolist()} are not binary; expected only {{0, 1}} or {{0, 255}}"
        )
    return (mask > 0).astype(np.uint8)


class SegmentationFolder(Dataset):
    """One split. Items are `{"image": (C, H, W) float normalized, "mask": (1, H, W) float {0,1}}`.

    Every pair is decoded once up front (contract check), and kept in memory when `cache` is true (small
    datasets: the embedded one is ~6 MB), otherwise decoded again per item.
    """

    def __init__(
        self,
        split_dir: Path,
        *,
        in_channels: int,
        mean: list[float],
        std: list[float],
        transform=None,
        label_noise=None,
        cache: bool = True,
    ) -> None:
        self.pairs = list_pairs(split_dir)
        self.label_noise = label_noise  # (mask, index) -> mask; training split only
        self.in_channels = in_channels
        self.transform = transform
        self.mean = np.asarray(mean, np.float32) * 255  # per channel, in pixel units
        self.std = np.asarray(std, np.float32) * 255
        if len(self.mean) != in_channels or len(self.std) != in_channels:
            raise DataError(
                f"data.mean/data.std have {len(self.mean)}/{len(self.std)} values but data.in_channels={in_channels}; give one per channel"
            )
        decoded = [self._read(i) for i in range(len(self.pairs))]
        self.cached = decoded if cache else None

    def __len__(self) -> int:
        return len(self.pairs)

    def _read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image_path, mask_path = self.pairs[index]
        image = read_image(image_path, self.in_channels)
        mask = read_mask(mask_path, image.shape)
        if self.label_noise is not None:
            mask = self.label_noise(mask, index)
        return image, mask

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        # (index, augment_seed) from the training sampler: the item's augmentation is a function of the
        # seed alone, whatever was drawn before it (resumable, worker-independent; seg/data/sampler.py).
        index, augment_seed = key if isinstance(key, tuple) else (key, None)
        image, mask = self.cached[index] if self.cached is not None else self._read(index)
        if self.transform is not None:
            if augment_seed is not None:
                seed_augmentation(self.transform, augment_seed)
            out = self.transform(image=image, mask=mask)  # nearest-neighbour for the mask: stays {0, 1}
            image, mask = out["image"], out["mask"]
        image = (image.astype(np.float32) - self.mean) / self.std  # (H, W, C)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),  # (C, H, W)
            "mask": torch.from_numpy(np.ascontiguousarray(mask[None], dtype=np.float32)),  # (1, H, W)
        }
