"""Flip test-time augmentation: the probability averaged over the image and its mirror images (as nnU-Net's).

The network sees the image as is, flipped left-right, upside down, and both; each output is flipped back and
the four probabilities are averaged. Probabilities, not logits, are averaged, as in nnU-Net and MONAI: one
confidently wrong view cannot outvote the others with an unbounded logit. Training's augmentation
(conf/augment/flips.yaml) flips the same way, so the views are images the network has learnt on.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))  # none, left-right, upside down, both


def flip_averaged(probability: Callable[[Tensor], Tensor], image: Tensor) -> Tensor:
    """(B, C, H, W) image -> (B, 1, H, W): the mean over FLIPS of flip(probability(flip(image)))."""
    total = None
    for dims in FLIPS:
        view = probability(image.flip(dims) if dims else image)
        view = view.flip(dims) if dims else view
        total = view if total is None else total + view
    return total / len(FLIPS)
