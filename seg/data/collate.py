"""Batching images of any size: pad to the batch's largest, rounded up to what the U-Net needs.

A U-Net of depth d halves the resolution d times, so its input sides must be multiples of 2 ** d. Images
are padded at the bottom and right by mirroring (the network sees more image, not a black frame), masks
with background, and `valid` marks the original pixels: the heads' losses, the metrics and the diagnostics
count only those, so padding changes no score. Every batch carries `valid`: the one representation of "this
pixel counts" from here to the loss, the metrics, the diagnostics and eval.py (ignored mask values are already
False in each item's `valid`, seg/data/folder.py).
"""

from __future__ import annotations

import torch
from torch import Tensor


def padded_size(height: int, width: int, multiple: int) -> tuple[int, int]:
    return -(-height // multiple) * multiple, -(-width // multiple) * multiple


def mirror_pad(image: Tensor, height: int, width: int) -> Tensor:
    """(..., H, W) -> (..., height, width), mirrored at the bottom and right edges (any amount of padding).

    The one mirror pad of the project: the collate pads batches with it and predict.py whole images and tiles,
    so the network sees the same pixels beyond an image's edge in training and at inference.
    """
    if tuple(image.shape[-2:]) == (height, width):
        return image
    rows = symmetric_index(image.shape[-2], height).to(image.device)
    columns = symmetric_index(image.shape[-1], width).to(image.device)
    return image[..., rows, :][..., columns]


def symmetric_index(length: int, padded: int) -> Tensor:
    """Indices that mirror [0, length) out to `padded`, edge pixel repeated: numpy's pad(mode="symmetric")."""
    index = torch.arange(padded) % (2 * length)
    return torch.where(index < length, index, 2 * length - 1 - index)


class PadCollate:
    """collate_fn for items `{"image": (C, H, W), "mask": (1, H, W), "valid": (1, H, W) bool}` of any sizes."""

    def __init__(self, multiple: int = 32) -> None:
        self.multiple = multiple

    def __call__(self, items: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        height = max(item["image"].shape[1] for item in items)
        width = max(item["image"].shape[2] for item in items)
        height, width = padded_size(height, width, self.multiple)
        images, masks, valids = [], [], []
        for item in items:
            images.append(mirror_pad(item["image"], height, width))
            masks.append(_pad_constant(item["mask"], height, width, 0.0))
            valids.append(_pad_constant(item["valid"], height, width, False))
        return {"image": torch.stack(images), "mask": torch.stack(masks), "valid": torch.stack(valids)}


def _pad_constant(tensor: Tensor, height: int, width: int, value) -> Tensor:
    h, w = tensor.shape[-2:]
    if (h, w) == (height, width):
        return tensor
    return torch.nn.functional.pad(tensor, (0, width - w, 0, height - h), value=value)
