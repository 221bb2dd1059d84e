"""The preparer's voice: single lines and progress bars on stderr, so stdout keeps only the final summary."""

from __future__ import annotations

from rich.console import Console

console = Console(stderr=True)


def say(line: str) -> None:
    """One line on stderr, not wrapped at the terminal's width (so it can be searched for as a whole)."""
    console.print(line, markup=False, highlight=False, soft_wrap=True)


def warn(text: str) -> None:
    say(f"warning: {text}")
