"""Report figures without pyplot: a `matplotlib.figure.Figure` renders to a file with no backend to choose, so
no module has to call `matplotlib.use` before its imports, and no global figure state leaks between reports."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure


def new_figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, list]:
    """A figure of `ncols` axes side by side."""
    fig = Figure(figsize=(width, height))
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def save_figure(fig: Figure, path: Path) -> None:
    """Every report figure the same way: tight layout, 120 dpi PNG."""
    fig.tight_layout()
    fig.savefig(path, dpi=120)
