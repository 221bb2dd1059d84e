"""What `write_plan` checks in every file it writes: damaged JPEGs (re-encoded) and masks without foreground (named)."""

from __future__ import annotations

from pathlib import PurePosixPath

import cv2
import numpy as np

from seg.errors import DataError
from seg.prepare.convert import png_bytes
from seg.prepare.libjpeg import JPEG_START, libjpeg_messages


class Checks:
    """What `write_plan` checks in every file it writes, and what it found (recorded in prepared.json).

    Damaged but decodable JPEGs: libjpeg decodes them but warns on stderr at every read (at every epoch of
    training). Each is re-encoded once, as a PNG of exactly the pixels OpenCV (our loader) decodes from it:
    lossless, so the dataset does not change, and only a handful of files grow. A high-quality JPEG would
    keep the size but lose a little more at each re-encoding.

    Masks without any `foreground` value: still written (an image without the object is a valid example,
    and dropping it would change the dataset's official split), but named, since in a dataset where every
    image shows the object it is usually an annotation error the user may want to drop.
    """

    NAMED = 10  # names in a console warning; prepared.json lists them all

    def __init__(self, foreground: tuple[int, ...]) -> None:
        self.foreground = list(foreground)
        self.reencoded: list[dict[str, str]] = []  # {"source", "written", "libjpeg"}
        self.empty_masks: list[str] = []  # written paths, relative to out

    def jpeg(self, encoded: bytes, dest: str, *, source: str) -> tuple[bytes, str]:
        """(bytes, dest) to write: as given, or a lossless PNG (dest's suffix .png) if libjpeg warns on them."""
        if not encoded.startswith(JPEG_START):
            return encoded, dest
        with libjpeg_messages() as messages:
            cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8)  # see libjpeg_messages
        if not messages:
            return encoded, dest
        with libjpeg_messages():  # it warns again while decoding the pixels
            pixels = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_UNCHANGED)  # as the loader does
        dest = PurePosixPath(dest).with_suffix(".png").as_posix()
        self.reencoded.append({"source": source, "written": dest, "libjpeg": messages[0]})
        return png_bytes(pixels), dest

    def mask(self, encoded: bytes, dest: str) -> None:
        if PurePosixPath(dest).parent.name != "masks":
            return
        stored = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_UNCHANGED)
        if stored is None:
            raise DataError(f"{dest}: the mask written cannot be decoded; the download may be damaged, fetch it again")
        if not np.isin(stored, self.foreground).any():
            self.empty_masks.append(dest)

    def warnings(self) -> list[str]:
        found = []
        if self.reencoded:
            files = [entry["source"] for entry in self.reencoded]
            found.append(
                f"{len(files)} JPEG(s) damaged but decodable (libjpeg: {self.reencoded[0]['libjpeg']}), re-encoded as lossless PNG: {self._named(files)}"
            )
        if self.empty_masks:
            found.append(
                f"{len(self.empty_masks)} mask(s) with no foreground pixel (value {', '.join(map(str, self.foreground))}), written anyway: {self._named(self.empty_masks)}"
            )
        return found

    def _named(self, files: list[str]) -> str:
        more = f" and {len(files) - self.NAMED} more (all in prepared.json)" if len(files) > self.NAMED else ""
        return ", ".join(files[: self.NAMED]) + more
