"""Decoding one image or mask file into arrays, or a DataError that names the file.

Images: PNG, JPEG, TIFF and BMP, 8- or 16-bit, grey (1 channel) or colour (3 channels, RGB order). An
alpha channel is dropped: it says how to composite the picture, not what is in it. Masks: one channel;
a colour file whose three channels are equal (a grey mask saved as RGB, a GIF) counts as grey.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from seg.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
MASK_SUFFIXES = IMAGE_SUFFIXES | {".gif"}
FULL_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
JPEG_START, JPEG_END = b"\xff\xd8", b"\xff\xd9"
JPEG_TAIL = 4096  # bytes searched for the end-of-image marker (some cameras append data after it)


def read_image(path: Path) -> np.ndarray:
    """(H, W, C) uint8 or uint16, C = 1 (grey) or 3 (RGB)."""
    image = _decode(path, "an image")
    if image.dtype not in FULL_SCALE:
        raise DataError(f"{path}: {image.dtype} pixels; images must be 8- or 16-bit integers (PNG, JPEG, TIFF)")
    if image.ndim == 2:
        return image[:, :, None]
    if image.shape[2] == 4:  # BGRA (also how OpenCV reads grey + alpha)
        image = image[:, :, :3]
    if image.shape[2] != 3:
        raise DataError(f"{path}: {image.shape[2]} channels; images must be grey, RGB or RGBA")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_mask(path: Path) -> np.ndarray:
    """(H, W) stored mask values, integers as in the file (decoding them is the mask policy's job)."""
    mask = _decode(path, "a mask")
    if mask.ndim == 3:
        colour = mask[:, :, :3]
        if not (np.array_equal(colour[:, :, 0], colour[:, :, 1]) and np.array_equal(colour[:, :, 0], colour[:, :, 2])):
            raise DataError(
                f"{path}: mask has {mask.shape[2]} different colour channels; masks must be single-channel (grey) images of label values"
            )
        mask = colour[:, :, 0]
    if not np.issubdtype(mask.dtype, np.integer):
        raise DataError(f"{path}: {mask.dtype} mask values; masks must hold integer labels")
    return mask


def to_unit_range(image: np.ndarray) -> np.ndarray:
    """uint8 or uint16 pixels -> float32 in [0, 1]: normalization statistics mean the same for both depths."""
    return image.astype(np.float32) / FULL_SCALE[image.dtype]


def normalize(image: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(H, W, C) float32 pixels in [0, 1] -> (H, W, C) float32 the network takes: per channel, (x - mean) / std.

    The one normalization of training (seg/data/folder.py) and prediction (seg/inference/predict.py).
    """
    return (image - mean) / std


def _decode(path: Path, what: str) -> np.ndarray:
    try:
        size = path.stat().st_size
    except FileNotFoundError:  # removed or renamed after the validation pass checked it
        raise DataError(
            f"{path}: file not found (it was there when the data was checked); restore it, or start the run again"
        ) from None
    if size == 0:  # an interrupted copy or download
        raise DataError(f"{path}: file is empty (0 bytes), not {what}; replace or remove the file")
    if _is_truncated_jpeg(path):
        # OpenCV decodes a truncated JPEG without an error, filling the missing part with grey.
        raise DataError(f"{path}: JPEG file is truncated (no end-of-image marker); replace or remove the file")
    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if array is None or array.size == 0:
        raise DataError(
            f"{path}: cannot be decoded as {what} (unreadable, truncated or not an image); replace or remove the file"
        )
    return array


def _is_truncated_jpeg(path: Path) -> bool:
    """A JPEG (by its first bytes, whatever the extension) without an end-of-image marker near its end.

    A file named .jpg that is not a JPEG (a PNG, a web page saved by mistake) is left to OpenCV, which
    decodes it or says it cannot.
    """
    with open(path, "rb") as handle:
        if handle.read(2) != JPEG_START:
            return False
        handle.seek(0, 2)
        handle.seek(max(0, handle.tell() - JPEG_TAIL))
        return JPEG_END not in handle.read()
