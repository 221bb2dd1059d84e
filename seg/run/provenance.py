"""Which code made a result: the git commit of the project folder, recorded in every run's summary.json."""

from __future__ import annotations

import subprocess
from functools import cache

from seg.paths import PROJECT_DIR


@cache
def source_commit() -> str | None:
    """Short hash of HEAD, with "-dirty" when tracked files differ from it; None outside a git checkout."""
    try:
        head = _git("rev-parse", "--short", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("-dirty" if dirty else "")


def _git(*args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(PROJECT_DIR), *args], capture_output=True, text=True, check=True, timeout=10
    )
    return result.stdout.strip()
