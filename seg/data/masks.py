"""Mask decoding: which stored pixel values are foreground, background, or ignored.

Masks arrive as 0/1 or 0/255 PNGs, as JPEGs whose compression smears 0 and 255 into neighbouring values,
or as label maps and trimaps (Oxford Pet: 1 pet, 2 background, 3 border). A `MaskPolicy` (conf/data/*.yaml
`mask:`) says how to read them, and refuses a value it was not told about rather than guessing: a mask
with a value outside the policy is a DataError naming the file, never silently background.

Decoded masks are (H, W) uint8 with 0 background, 1 foreground and IGNORE for pixels that count in
neither the loss nor the metrics (a trimap's border, DRIVE's outside-the-eye, the padding of an image).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from seg.errors import DataError

IGNORE = 255  # decoded value of an ignored pixel; decoded masks otherwise hold only 0 and 1


class MaskPolicy:
    """Stored value -> {0, 1, IGNORE}, from explicit value lists or a threshold.

    foreground/background/ignore: the stored values of each kind; every value in a mask must be listed.
    threshold: when set, values >= threshold are foreground and the rest background (the lists are unused);
    for JPEG-compressed masks, whose values are not exact.
    """

    def __init__(
        self,
        *,
        foreground: Sequence[int] = (1, 255),
        background: Sequence[int] = (0,),
        ignore: Sequence[int] = (),
        threshold: float | None = None,
    ) -> None:
        self.foreground, self.background, self.ignore = (
            sorted({int(v) for v in values}) for values in (foreground, background, ignore)
        )
        self.threshold = threshold
        overlap = (set(self.foreground) & set(self.background)) | (
            set(self.ignore) & (set(self.foreground) | set(self.background))
        )
        if threshold is None and overlap:
            raise DataError(
                f"data.mask: value(s) {sorted(overlap)} listed in two of foreground/background/ignore; list each value once"
            )
        if threshold is None and not self.foreground:
            raise DataError(
                "data.mask.foreground is empty: list the stored values that mark the foreground, or set data.mask.threshold"
            )

    def unexpected(self, values: Iterable[int]) -> list[int]:
        """The stored values this policy does not know (always none with a threshold)."""
        if self.threshold is not None:
            return []
        known = set(self.foreground) | set(self.background) | set(self.ignore)
        return sorted(set(int(v) for v in values) - known)

    def describe(self) -> str:
        if self.threshold is not None:
            return f"values >= {self.threshold} foreground, below background"
        text = f"foreground {self.foreground}, background {self.background}"
        return text + (f", ignore {self.ignore}" if self.ignore else "")

    def decode(self, stored: np.ndarray, path) -> np.ndarray:
        """(H, W) stored values -> (H, W) uint8 in {0, 1, IGNORE}; a DataError names a value outside the policy."""
        if self.threshold is not None:
            return (stored >= self.threshold).astype(np.uint8)
        values = np.unique(stored)
        unknown = self.unexpected(values.tolist())
        if unknown:
            raise DataError(self.unexpected_message(path, unknown))
        decoded = np.zeros(stored.shape, np.uint8)
        decoded[np.isin(stored, self.foreground)] = 1
        if self.ignore:
            decoded[np.isin(stored, self.ignore)] = IGNORE
        return decoded

    def unexpected_message(self, path, unknown: list[int]) -> str:
        shown = ", ".join(str(v) for v in unknown[:8]) + (", ..." if len(unknown) > 8 else "")
        return (
            f"{path}: mask values {{{shown}}} are outside the mask policy ({self.describe()}); list them in "
            "data.mask.foreground/background/ignore, or set data.mask.threshold=128 for JPEG-compressed masks"
        )

    def __repr__(self) -> str:  # part of the validation cache key: the policy's whole meaning
        return (
            f"MaskPolicy(fg={self.foreground}, bg={self.background}, ignore={self.ignore}, threshold={self.threshold})"
        )
