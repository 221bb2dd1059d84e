"""The one channel-count check: an image (or a per-channel setting) against what the model or config expects."""

from __future__ import annotations

from pathlib import Path


def channel_mismatch(subject: Path | str, found: int, expected: int, *, against: str, fix: str) -> str | None:
    """None when `found == expected`, else the one-line message `<subject>: has F channel(s) but <against> E; <fix>`.

    subject: the file or config key that has `found` channels; against: who expects `expected`, e.g.
    "the model takes". Callers raise it as a DataError or collect it with a scan's other problems.
    """
    if found == expected:
        return None
    return f"{subject}: has {found} channel(s) but {against} {expected}; {fix}"
