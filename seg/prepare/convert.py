"""Conversions of a file's bytes our loader cannot read as they are: masks to single-channel PNGs, shrinking."""

from __future__ import annotations

import io
from pathlib import PurePosixPath

import cv2
import numpy as np
from PIL import Image

from seg.errors import DataError
from seg.prepare.plan import Convert


def open_image(data: bytes, name: str) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as error:  # Pillow raises many types for a bad file
        raise DataError(
            f"{name}: cannot decode this image ({error}); the download may be damaged, fetch it again"
        ) from None
    return image


def png_bytes(array: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", array)
    assert ok
    return encoded.tobytes()


def binary_mask(data: bytes, name: str) -> np.ndarray:
    """(H, W) bool: True where a lossless two-level mask (GIF, PNG, TIFF) is not black.

    Through the palette: a GIF stores indices (Carvana's 0/1) whose colours are black and white.
    """
    return np.asarray(open_image(data, name).convert("L")) > 0


def threshold_to_png(name: str, *, at: int = 128) -> Convert:
    """A JPEG-compressed two-level mask (values spread around 0 and 255, maybe 3 equal channels) as a
    single-channel 0/255 PNG: 255 where the decoded grey is >= `at`, else 0."""
    return lambda data: png_bytes((np.asarray(open_image(data[0], name).convert("L")) >= at).astype(np.uint8) * 255)


def gif_to_png(name: str) -> Convert:
    """A two-level mask (e.g. Carvana's GIF) as a 0/255 PNG our loader can read."""
    return lambda data: png_bytes(binary_mask(data[0], name).astype(np.uint8) * 255)


def shrink(encoded: bytes, *, max_side: int, dest: str) -> bytes:
    """The file shrunk so its longest side is max_side (images: area; masks: nearest, keeping their values).

    An image and its mask have the same size, so both get the same new size without knowing each other.
    """
    array = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise DataError(f"{dest}: cannot decode this file to shrink it; prepare again without --max-side")
    height, width = array.shape[:2]
    if max(height, width) <= max_side:
        return encoded
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    is_mask = "masks/" in dest
    small = cv2.resize(array, size, interpolation=cv2.INTER_NEAREST if is_mask else cv2.INTER_AREA)
    suffix = PurePosixPath(dest).suffix.lower()
    ok, out = cv2.imencode(suffix, small, [cv2.IMWRITE_JPEG_QUALITY, 95] if suffix in (".jpg", ".jpeg") else [])
    assert ok
    return out.tobytes()
