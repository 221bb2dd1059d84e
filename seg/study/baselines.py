"""How far a global grey threshold gets: the floor a segmentation network must clear by a wide margin."""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np


def threshold_iou(
    images: Iterable[np.ndarray], masks: Iterable[np.ndarray], blur_sigmas: Iterable[float] = (0, 1, 2, 3)
) -> dict[str, float]:
    """Best dataset-level IoU of `blur(image) > t` or `blur(image) < t` over every t and blur.

    The threshold is chosen on the very data it is scored on (an oracle), so the result is an upper bound
    for any global grey threshold. images: uint8 (H, W) or (H, W, C) (averaged to grey); masks: (H, W) {0,1}.
    """
    images, masks = list(images), [np.asarray(m).astype(bool) for m in masks]
    best = {"iou": 0.0, "blur_sigma": 0.0, "threshold": 0.0, "polarity": 1.0}
    for sigma in blur_sigmas:
        fg_hist, bg_hist = np.zeros(256), np.zeros(256)
        for image, mask in zip(images, masks, strict=True):
            grey = image.mean(-1) if image.ndim == 3 else image.astype(np.float32)
            if sigma > 0:
                grey = cv2.GaussianBlur(grey.astype(np.float32), (0, 0), sigma)
            levels = np.clip(np.round(grey), 0, 255).astype(np.int64)
            fg_hist += np.bincount(levels[mask], minlength=256)
            bg_hist += np.bincount(levels[~mask], minlength=256)
        # foreground = level > t: true positives are the foreground pixels above t, etc.
        fg_above = fg_hist.sum() - np.cumsum(fg_hist)
        bg_above = bg_hist.sum() - np.cumsum(bg_hist)
        for polarity, tp, fp in ((1.0, fg_above, bg_above), (-1.0, fg_hist.sum() - fg_above, bg_hist.sum() - bg_above)):
            iou = tp / np.maximum(fg_hist.sum() + fp, 1)  # tp / (tp + fn + fp), with tp + fn = all foreground
            t = int(np.argmax(iou))
            if iou[t] > best["iou"]:
                best = {"iou": float(iou[t]), "blur_sigma": float(sigma), "threshold": t + 0.5, "polarity": polarity}
    return best
