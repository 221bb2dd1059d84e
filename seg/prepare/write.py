"""Writing a plan: into a temporary folder next to --out, every file checked, renamed into place when complete.

An interrupted prepare leaves no half dataset, and sources are only ever opened for reading.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from seg.errors import UserError
from seg.prepare.checks import Checks
from seg.prepare.console import warn
from seg.prepare.convert import shrink
from seg.prepare.plan import Plan
from seg.prepare.source import Source

PREPARE_VERSION = 2  # bump when a preparer writes different files for the same source


def check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out}: already exists and is not empty; choose another --out or remove it first")


def write_plan(
    plan: Plan, out: Path, *, dataset: str, source: Source, foreground: tuple[int, ...], max_side: int | None = None
) -> dict:
    """Write the plan into a temporary folder next to `out`, then rename it to `out`; returns the manifest.

    Every file is checked as it is written (see `Checks`): damaged JPEGs are re-encoded, masks without a
    `foreground` value are named. max_side: images (and their masks) whose longest side is larger are
    shrunk to it; None keeps every size.
    """
    check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.prepare-", dir=out.parent))
    checks = Checks(foreground)
    try:
        jobs = sorted(plan.jobs, key=lambda job: job.sources[0].order)  # archive order: one pass over a .tar.gz
        for job in source.track(jobs, f"{dataset}: writing {out}"):
            data = [member.read() for member in job.sources]
            encoded = job.convert(data) if job.convert else data[0]
            encoded, dest = checks.jpeg(encoded, job.dest, source=job.sources[0].path)
            if max_side:
                encoded = shrink(encoded, max_side=max_side, dest=dest)
            checks.mask(encoded, dest)
            target = tmp / dest
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(encoded)
        for warning in checks.warnings():
            warn(warning)
        manifest = {
            "dataset": dataset,
            "prepare_version": PREPARE_VERSION,
            "source": [str(p.resolve()) for p in source.paths],
            "layout": "flat" if set(plan.counts) == {"all"} else "splits",
            "counts": plan.counts,
            "max_side": max_side,
            **plan.notes,
            "reencoded_damaged_jpegs": checks.reencoded,
            "masks_without_foreground": checks.empty_masks,
            "warnings": plan.warnings + checks.warnings(),
        }
        (tmp / "prepared.json").write_text(json.dumps(manifest, indent=2) + "\n")
        check_out(out)  # another process may have written it meanwhile
        if out.exists():
            out.rmdir()  # empty: replaced by the finished folder
        os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest
