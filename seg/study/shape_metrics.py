"""Metrics IoU is blind to: where the edge lands (boundary IoU) and whether thin lines stay connected (clDice).

- Boundary IoU (Cheng et al. 2021): IoU of the inner boundary bands, the pixels of a mask within `width` px
  of its contour (the mask minus its erosion; the image border counts as contour). A prediction that moves an
  edge by one pixel loses little IoU on a large object and much boundary IoU.
- clDice (Shit et al. 2021): the harmonic mean of topology precision |S(P) ∩ G| / |S(P)| and topology
  sensitivity |S(G) ∩ P| / |S(G)|, S the morphological skeleton (the paper's skeleton, hard: iterated
  erosions minus their openings, cross-shaped 3x3, outside the image background). A 1-px line is its own
  skeleton.

Both accumulate counts over a whole split (micro average, as the IoU of seg.model.metrics), so an image without
foreground adds nothing rather than NaN. `ShapeMetrics` (callbacks=atlas_shape) logs `test/boundary_iou` and
`test/cldice` at the end of testing.
"""

from __future__ import annotations

import math

import cv2
import lightning as L
import numpy as np

CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
SQUARE = np.ones((3, 3), np.uint8)


def boundary_band(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """(H, W) bool: the pixels of `mask` within `width` px (chessboard distance) of its contour or the image border."""
    m = mask.astype(np.uint8)
    padded = cv2.copyMakeBorder(m, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)  # outside the image is background
    eroded = cv2.erode(padded, SQUARE, iterations=width)[1:-1, 1:-1]
    return m.astype(bool) & ~eroded.astype(bool)


def boundary_counts(prediction: np.ndarray, truth: np.ndarray, width: int = 1) -> tuple[int, int]:
    """(intersection, union) of the two boundary bands of one image."""
    p, g = boundary_band(prediction, width), boundary_band(truth, width)
    return int((p & g).sum()), int((p | g).sum())


def skeleton(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool morphological skeleton: the union over k of erode^k(X) minus its opening (outside the image is
    background, as for the boundary band)."""
    image = cv2.copyMakeBorder(mask.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    skel = np.zeros_like(image)
    while image.any():
        opened = cv2.morphologyEx(image, cv2.MORPH_OPEN, CROSS)
        skel |= image & (1 - opened)
        image = cv2.erode(image, CROSS)
    return skel[1:-1, 1:-1].astype(bool)


def cldice_counts(prediction: np.ndarray, truth: np.ndarray) -> tuple[int, int, int, int]:
    """(|S(P) ∩ G|, |S(P)|, |S(G) ∩ P|, |S(G)|) of one image."""
    p, g = prediction.astype(bool), truth.astype(bool)
    sp, sg = skeleton(p), skeleton(g)
    return int((sp & g).sum()), int(sp.sum()), int((sg & p).sum()), int(sg.sum())


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


class ShapeCounts:
    """Running sums over a split; `boundary_iou()` and `cldice()` read them."""

    def __init__(self, width: int = 1) -> None:
        self.width = width
        self.reset()

    def reset(self) -> None:
        self.boundary = np.zeros(2, np.int64)  # intersection, union
        self.topology = np.zeros(4, np.int64)  # |S(P) ∩ G|, |S(P)|, |S(G) ∩ P|, |S(G)|

    def update(self, prediction: np.ndarray, truth: np.ndarray) -> None:
        """One image's (H, W) bool prediction and truth (ignored pixels already False in both)."""
        self.boundary += boundary_counts(prediction, truth, self.width)
        self.topology += cldice_counts(prediction, truth)

    def boundary_iou(self) -> float:
        return ratio(*self.boundary)

    def cldice(self) -> float:
        if not self.topology[1] and not self.topology[3]:
            return math.nan  # no skeleton on either side: nothing to score
        # an empty side scores 0 (an all-background prediction finds no line), not NaN
        precision, sensitivity = (ratio(*self.topology[i : i + 2]) for i in (0, 2))
        precision, sensitivity = (0.0 if math.isnan(v) else v for v in (precision, sensitivity))
        return 0.0 if precision + sensitivity == 0 else 2 * precision * sensitivity / (precision + sensitivity)


class ShapeMetrics(L.Callback):
    """Logs test/boundary_iou and test/cldice of the head's decision (one process; the atlas's jobs)."""

    def __init__(self, *, width: int = 1) -> None:
        self.counts = ShapeCounts(width)

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self.counts.reset()

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        valid = batch["valid"][:, 0].cpu().numpy()  # (B, H, W)
        prediction = pl_module.head.predict(outputs["logits"].float())[:, 0].cpu().numpy() & valid
        truth = (batch["mask"][:, 0] > 0.5).cpu().numpy() & valid
        for p, g in zip(prediction, truth, strict=True):
            self.counts.update(p, g)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        pl_module.log("test/boundary_iou", self.counts.boundary_iou())
        pl_module.log("test/cldice", self.counts.cldice())
