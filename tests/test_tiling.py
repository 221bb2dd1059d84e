"""The tiler of predict.py without a checkpoint: exact on pointwise networks, local networks agree away from tiles'
edges, padding is numpy's, tiles start on the stride's grid, and tile=/overlap= are checked."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seg.data.collate import symmetric_index
from seg.errors import UserError
from seg.inference.tiling import Tiling, tile_starts, tiled_probability, tiling_from_config


def pointwise(tiles: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, 1, h, w): a network whose output at a pixel depends on that pixel only."""
    return torch.sigmoid(tiles.mean(1, keepdim=True) * 3)


@pytest.mark.parametrize("shape", [(3, 200, 300), (1, 37, 501), (2, 130, 70), (1, 5, 3)])
def test_a_pointwise_network_gives_the_same_probability_tiled(shape):
    image = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    tiled = tiled_probability(image, pointwise, tile=64, overlap=32, stride=32, batch_size=5)
    assert tiled.shape == (1, *shape[1:])
    torch.testing.assert_close(tiled, pointwise(image[None])[0], rtol=0, atol=1e-6)


def test_a_local_network_agrees_with_the_whole_image_beyond_its_reach():
    """A 5-layer 3x3 convolution stack (receptive field 11 px) with zero padding, as the U-Net pads: a tile's
    prediction is wrong only within 5 px of an edge inside the image, and 32 px of overlap blends those away."""
    torch.manual_seed(0)
    layers = [torch.nn.Conv2d(1 if i == 0 else 8, 8, 3, padding=1) for i in range(4)] + [
        torch.nn.Conv2d(8, 1, 3, padding=1)
    ]
    net = torch.nn.Sequential(*[m for conv in layers for m in (conv, torch.nn.Tanh())][:-1]).eval()

    def net_fn(tiles: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(10 * net(tiles))  # a confident network: probabilities spread over [0, 1]

    image = torch.randn(1, 192, 288)  # multiples of the stride: no padding, so the whole image is the reference
    with torch.no_grad():
        whole = net_fn(image[None])[0]
        without = tiled_probability(image, net_fn, tile=64, overlap=0, stride=32, batch_size=8)
        overlapped = tiled_probability(image, net_fn, tile=64, overlap=32, stride=32, batch_size=8)
    print(
        f"max |tiled - whole|: {(without - whole).abs().max():.2e} without overlap, {(overlapped - whole).abs().max():.2e} with 32 px"
    )
    assert (without - whole).abs().max() > 0.05  # seams without overlap: the check below can fail
    assert (overlapped - whole).abs().max() < 1e-3


def test_padding_is_numpys_symmetric_mirror_even_beyond_the_image():
    for length, padded in [(27, 32), (5, 32), (1, 32), (64, 64)]:
        expected = np.pad(np.arange(length), (0, padded - length), mode="symmetric")
        assert symmetric_index(length, padded).tolist() == expected.tolist()


def test_tiles_cover_the_image_on_the_stride_grid_last_one_flush():
    assert tile_starts(224, 96, 64) == [0, 64, 128]
    assert tile_starts(320, 96, 64) == [0, 64, 128, 192, 224]
    assert tile_starts(64, 64, 32) == [0]
    for length in range(32, 700, 32):
        starts = tile_starts(length, min(128, length), 96)
        assert all(s % 32 == 0 for s in starts) and starts[-1] + min(128, length) == length
        assert all(b - a <= 96 for a, b in zip(starts, starts[1:], strict=False))


def test_tile_and_overlap_are_checked_once_in_pixels():
    assert tiling_from_config(None, 0.25, 32) is None and tiling_from_config(0, 0.25, 32) is None
    assert tiling_from_config(512, 0.25, 32) == Tiling(tile=512, overlap=128)
    assert tiling_from_config(512, 100, 32) == Tiling(tile=512, overlap=96)  # px, to the stride's grid
    assert tiling_from_config(512, 0, 32).overlap == 0
    assert Tiling(tile=512, overlap=128).applies_to(512, 544) and not Tiling(512, 128).applies_to(512, 512)
    with pytest.raises(UserError, match=r"tile=500: must be a multiple of 32"):
        tiling_from_config(500, 0.25, 32)
    with pytest.raises(UserError, match=r"overlap=512: must be a fraction of the tile in \[0, 1\) or px in \[1, 512\)"):
        tiling_from_config(512, 512, 32)
    with pytest.raises(UserError, match=r"overlap=-0.1"):
        tiling_from_config(512, -0.1, 32)
