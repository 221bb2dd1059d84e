"""libjpeg's warnings about damaged JPEGs, which it prints from C to the process's stderr, caught as text."""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

JPEG_START = b"\xff\xd8"  # start-of-image marker: JPEG data, whatever the file is called
LIBJPEG_WARNING = re.compile(
    r"(?:Corrupt JPEG data|Premature end of JPEG file|Invalid SOS parameters|Inconsistent progression|"
    r"Unknown Adobe color transform|Warning: unknown JFIF)[^\n]*\n?"
)


@contextmanager
def libjpeg_messages() -> Iterator[list[str]]:
    """The libjpeg warnings printed while in the block (e.g. "Corrupt JPEG data: 3 extraneous bytes before marker 0xd9").

    Pillow's decoder silences them, and OpenCV has no API for them: libjpeg prints them from C to the
    process's stderr. So file descriptor 2 points at a temporary file meanwhile. Decoding at 1/8 scale
    (IMREAD_REDUCED_*_8) still reads all the entropy-coded data, where such damage lies, at a third of the
    time. Other text written meanwhile (a progress bar's refresh thread) is passed on to stderr.
    """
    messages: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as captured:
            os.dup2(captured.fileno(), 2)
            try:
                yield messages
            finally:
                os.dup2(saved, 2)
                captured.seek(0)
                text = captured.read().decode(errors="replace")
    finally:
        os.close(saved)
    messages += [line.strip() for line in LIBJPEG_WARNING.findall(text)]
    if rest := LIBJPEG_WARNING.sub("", text):
        sys.stderr.write(rest)
        sys.stderr.flush()
