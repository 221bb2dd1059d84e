"""Annotation noise for training masks: the conditions under which a bounded loss (tanh+MSE) might help.

Real annotators miss objects, draw outlines a pixel or two off, and slip. `LabelNoise` does the same to
the *training* masks only (validation and test stay clean, so metrics measure the truth), per object of
the mask's connected components, deterministically from (seed, image index): a run's noisy labels are
fixed for its whole training, and two heads trained with the same seed see the very same noisy labels.
"""

from __future__ import annotations

import cv2
import numpy as np


class LabelNoise:
    """One knob, `level` in [0, 1], scaled by a weight per kind of noise.

    - jitter: each object's outline moves by 1..max_shift px, inward or outward, with probability level * jitter;
    - drop: each object is missing from the mask with probability level * drop;
    - flip: each pixel is flipped with probability level * flip.
    """

    def __init__(
        self,
        *,
        level: float,
        jitter: float = 1.0,
        drop: float = 0.5,
        flip: float = 0.02,
        max_shift: int = 2,
        seed: int = 0,
    ) -> None:
        if not 0.0 <= level <= 1.0:
            raise ValueError(f"data.label_noise.level={level}: must be within [0, 1]")
        self.level, self.jitter, self.drop, self.flip = level, jitter, drop, flip
        self.max_shift, self.seed = max_shift, seed

    def __call__(self, mask: np.ndarray, index: int) -> np.ndarray:
        """(H, W) uint8 {0,1} mask -> its noisy version, the same for the same (seed, index)."""
        if self.level == 0:
            return mask
        rng = np.random.default_rng([self.seed, index])
        count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
        noisy = np.zeros_like(mask, dtype=np.uint8)
        for label in range(1, count):
            piece = (labels == label).astype(np.uint8)
            if rng.random() < self.level * self.drop:
                continue
            if rng.random() < self.level * self.jitter:
                r = int(rng.integers(1, self.max_shift + 1))
                disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
                piece = cv2.dilate(piece, disc) if rng.random() < 0.5 else cv2.erode(piece, disc)
            noisy |= piece
        flips = rng.random(mask.shape) < self.level * self.flip
        return (noisy ^ flips).astype(np.uint8)

    def __repr__(self) -> str:
        return f"LabelNoise(level={self.level}, jitter={self.jitter}, drop={self.drop}, flip={self.flip}, seed={self.seed})"
