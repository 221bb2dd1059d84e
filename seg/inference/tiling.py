"""Predicting an image larger than memory allows in overlapping tiles: where the tiles go and how they blend.

Pure tensor maths, no file I/O (that is seg/inference/predict.py): `tiled_probability` takes a normalized image
and a function from a batch of tiles to their probability, so tests drive it with networks built for them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from seg.data.collate import mirror_pad, padded_size
from seg.errors import UserError

NetFn = Callable[[torch.Tensor], torch.Tensor]  # (B, C, h, w) normalized tiles -> (B, 1, h, w) probability


@dataclass(frozen=True)
class Tiling:
    """Square tiles of side `tile` px whose neighbours share `overlap` px, for images larger than a tile."""

    tile: int  # a multiple of the stride
    overlap: int  # a multiple of the stride, < tile

    def applies_to(self, height: int, width: int) -> bool:
        return height * width > self.tile**2


def tiling_from_config(tile: int | None, overlap: float, stride: int) -> Tiling | None:
    """`tile=` / `overlap=` (a fraction of the tile below 1, else px) checked once; None: every image whole."""
    if not tile:
        return None
    if tile % stride or tile < stride:
        raise UserError(f"tile={tile}: must be a multiple of {stride} (the U-Net's stride), or null to predict whole")
    pixels = overlap * tile if 0 <= overlap < 1 else overlap
    shared = int(round(pixels / stride)) * stride  # tiles start on the stride's grid, as the whole image's pixels do
    if overlap < 0 or shared >= tile:
        raise UserError(
            f"overlap={overlap}: must be a fraction of the tile in [0, 1) or px in [1, {tile}) (rounded to {stride} px)"
        )
    return Tiling(tile=tile, overlap=shared)


def tiled_probability(
    image: torch.Tensor, net_fn: NetFn, *, tile: int, overlap: int, stride: int, batch_size: int
) -> torch.Tensor:
    """(C, H, W) normalized image, any size -> (1, H, W) probability, predicted in tiles of at most tile x tile.

    The image is mirrored out at the bottom and right to multiples of `stride` (as a whole image is), cut into
    tiles that start every `tile - overlap` px (all on the stride's grid, so each tile sees the pixels in the
    same phase of the U-Net's downsampling as the whole image does) with the last ones flush with the edge, and
    `net_fn` runs on `batch_size` tiles at a time. Each output pixel is the average of the probabilities of the
    tiles covering it, weighted by `blend_weights` (so an image that fits one tile comes out as if whole).
    Probabilities, not logits, are blended: they are bounded, so a tile that is confidently wrong at its border
    (a large logit for lack of context) cannot outvote the tiles that see the pixel well. The two sums live on
    the image's device (the CPU in predict.py, 8 bytes a pixel); only tiles go to `net_fn`.
    """
    _, height, width = image.shape
    padded_height, padded_width = padded_size(height, width, stride)
    padded = mirror_pad(image, padded_height, padded_width)
    tile_h, tile_w = min(tile, padded_height), min(tile, padded_width)  # an image narrower than a tile
    corners = [
        (top, left)
        for top in tile_starts(padded_height, tile_h, tile - overlap)
        for left in tile_starts(padded_width, tile_w, tile - overlap)
    ]
    weighted_sum = torch.zeros(1, padded_height, padded_width, device=image.device)
    weight_sum = torch.zeros(1, padded_height, padded_width, device=image.device)
    for first in range(0, len(corners), batch_size):
        chunk = corners[first : first + batch_size]
        tiles = torch.stack([padded[:, top : top + tile_h, left : left + tile_w] for top, left in chunk])
        probability = net_fn(tiles)  # (b, 1, tile_h, tile_w)
        for (top, left), p in zip(chunk, probability, strict=True):
            rows = blend_weights(tile_h, at_start=top == 0, at_end=top + tile_h == padded_height)
            columns = blend_weights(tile_w, at_start=left == 0, at_end=left + tile_w == padded_width)
            weight = (rows[:, None] * columns[None, :]).to(image.device)  # (tile_h, tile_w)
            weighted_sum[:, top : top + tile_h, left : left + tile_w] += p * weight
            weight_sum[:, top : top + tile_h, left : left + tile_w] += weight
    return (weighted_sum / weight_sum)[:, :height, :width]


def tile_starts(length: int, tile: int, step: int) -> list[int]:
    """Offsets of tiles of side `tile` covering [0, length): every `step`, the last one flush with the end."""
    return [*range(0, length - tile, step), length - tile]


def blend_weights(size: int, *, at_start: bool, at_end: bool) -> torch.Tensor:
    """(size,) weights along one side of a tile: a Gaussian bump, sigma 1/8 of the side (as nnU-Net's).

    Where tiles overlap, the one that sees a pixel nearer its centre counts most, since near a tile's edge the
    network lacks the context the whole image would give. An edge that lies on the image's own edge (`at_start`,
    `at_end`) lacks nothing the whole image has, so the weight stays 1 up to it: a pixel near the image's edge
    is then taken from the tile that shares that edge, not from a neighbour that cuts the pixel's context.
    The smallest weight, exp(-8) ~ 3e-4, keeps every covered pixel defined.
    """
    offset = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    weight = torch.exp(-0.5 * (offset / (size / 8)) ** 2)
    if at_start:
        weight = torch.where(offset < 0, 1.0, weight)
    if at_end:
        weight = torch.where(offset > 0, 1.0, weight)
    return weight
