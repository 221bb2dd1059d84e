"""Post-processing of a decision mask: removing foreground components smaller than a given area.

nnU-Net keeps such a step when validation says it helps: a few scattered false-positive pixels cost IoU,
and a real object is rarely that small. Components are 8-connected (diagonal neighbours join), as OpenCV's
default. Off (`min_component=0`) unless asked for.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor

from seg.errors import UserError


def remove_small_components(mask: np.ndarray, min_size: int) -> np.ndarray:
    """(H, W) bool -> (H, W) bool without the 8-connected foreground components of fewer than `min_size` pixels."""
    if min_size <= 1 or not mask.any():
        return mask
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_size  # (count,), label 0 the background
    keep[0] = False
    return keep[labels]


def remove_small_components_batch(decision: Tensor, min_size: int) -> Tensor:
    """(B, 1, H, W) bool, the same per image (on the CPU; back on the decision's device)."""
    if min_size <= 1:
        return decision
    kept = np.stack([remove_small_components(d[0], min_size)[None] for d in decision.cpu().numpy()])
    return torch.from_numpy(kept).to(decision.device)


def check_min_component(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UserError(f"min_component={value}: must be a whole number of pixels >= 0 (0: keep every component)")
    return value
