"""Public datasets in their distributed layouts -> our folder layout: `scripts/prepare.py NAME --src ... --out ...`.

One module per dataset, each exporting `DATASET` (a `seg.prepare.common.Dataset`); `DATASETS` maps the CLI
name, which is also the preset's name (`conf/data/<name>.yaml`), to it. Adding a dataset is adding a module
here and a preset.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from seg.errors import UserError
from seg.prepare import carvana, drive, isic2018, kvasir_seg, oxford_pet
from seg.prepare.common import Dataset, Source, check_out, say, warn, write_plan

DATASETS: dict[str, Dataset] = {m.DATASET.name: m.DATASET for m in (oxford_pet, kvasir_seg, isic2018, carvana, drive)}
KEEP = object()  # max_side default: the dataset's own


def prepare(
    name: str, src: Sequence[Path], out: Path, *, max_side: int | None | object = KEEP, progress: bool = True
) -> dict:
    """Write dataset `name` from the archives/folders `src` into `out` in our layout; returns prepared.json's content.

    max_side: shrink images (and masks) whose longest side is larger; None or 0 keeps sizes; default: the dataset's.
    """
    if name not in DATASETS:
        raise UserError(f"unknown dataset '{name}'; choose one of {', '.join(DATASETS)}")
    dataset = DATASETS[name]
    out = Path(out).expanduser()
    check_out(out)  # before reading a large archive
    source = Source(src, archives=dataset.archives, progress=progress)
    plan = dataset.plan(source)
    for line in plan.info:
        say(f"{name}: {line}")
    for warning in plan.warnings:
        warn(warning)
    limit = dataset.max_side if max_side is KEEP else (max_side or None)
    return write_plan(plan, out, dataset=name, source=source, foreground=dataset.foreground, max_side=limit)
