"""Public datasets in their distributed layouts -> our folder layout: `scripts/prepare.py NAME --src ... --out ...`.

One module per dataset, each exporting `DATASET` (a `seg.prepare.plan.Dataset`); `DATASETS` maps the CLI
name, which is also the preset's name (`conf/data/<name>.yaml`), to it. Adding a dataset is adding a module
here and a preset.

A preparer looks at the files of its `Source` (source.py; zips, tars and folders read alike by archives.py:
posix paths as stored in the archives, or relative to a `--src` folder's parent, so `kvasir-seg.zip` and
its extracted `Kvasir-SEG/` list the same paths) and returns a `Plan` (plan.py): which file goes where, and
how a file our loader cannot read is converted (convert.py). `write_plan` (write.py) then writes it into a
temporary folder next to `out`, checking every file on the way (checks.py: damaged JPEGs, found through
libjpeg's own messages, libjpeg.py; masks without foreground), adds `prepared.json`, and renames the
folder into place: an interrupted prepare leaves no half dataset. Sources are only ever opened for reading.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from seg.errors import UserError
from seg.prepare import camvid, carvana, drive, isbi2012, isic2018, kvasir_seg, oxford_pet
from seg.prepare.console import say, warn
from seg.prepare.plan import Dataset
from seg.prepare.source import Source
from seg.prepare.write import check_out, write_plan

DATASETS: dict[str, Dataset] = {
    m.DATASET.name: m.DATASET for m in (oxford_pet, kvasir_seg, isic2018, carvana, drive, isbi2012, camvid)
}
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
