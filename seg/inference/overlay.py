"""Tinting pixels of a picture: the one overlay of the training pictures (seg/run/callbacks/predictions.py) and
predict.py's `<stem>_overlay.png`."""

from __future__ import annotations

import torch
from torch import Tensor

GREEN, RED, BLUE = (0.0, 1.0, 0.0), (1.0, 0.0, 0.0), (0.0, 0.0, 1.0)
ALPHA = 0.5  # overlay opacity: the image stays visible under the colour


def overlay(rgb: Tensor, where: Tensor, colour: tuple[float, float, float], alpha: float = ALPHA) -> Tensor:
    """(3, H, W) rgb in [0, 1] with `colour` blended in at the (1, H, W) bool `where`."""
    tint = torch.tensor(colour, dtype=rgb.dtype).view(3, 1, 1)
    return torch.where(where, (1 - alpha) * rgb + alpha * tint, rgb)
