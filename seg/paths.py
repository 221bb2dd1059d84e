"""Where the project lives, so relative data paths do not depend on Hydra's run directory or the cwd."""

from __future__ import annotations

from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent  # the folder holding seg/, conf/, data/


def resolve_project_path(path: str | Path) -> Path:
    """Absolute paths stay; relative ones are taken from the project directory (e.g. `data/synthetic`)."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else PROJECT_DIR / path
