"""Measure how many flipped training labels each finished label-noise job memorised, at its best checkpoint and at
its final weights, and write them beside its summary.json as memorisation.json (seg/inference/memorisation.py):

    python scripts/memorisation.py multirun/regime_noise/sigmoid_bce multirun/regime_noise/tanh_mse

The atlas report (scripts/atlas.py) then reads them as each job's `train/...` and `last/train/...` metrics. A job
whose memorisation.json is newer than its summary.json is skipped (`--force` measures it again); a job without
checkpoints/last.ckpt gets the best checkpoint's numbers only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from seg.errors import UserError  # noqa: E402
from seg.inference.checkpoint import load_trained_model  # noqa: E402
from seg.inference.memorisation import FILE, memorisation  # noqa: E402
from seg.run.cli import quiet_library_noise, report_user_errors  # noqa: E402
from seg.study.compare import find_jobs  # noqa: E402

CHECKPOINTS = (("best.ckpt", "train/"), ("last.ckpt", "last/train/"))  # file, key prefix (as summary.json's)


def finished_jobs(directories: list[Path]) -> list[Path]:
    """Every Hydra job under the sweep folders that wrote summary.json (a finished run), as the atlas finds them."""
    for directory in directories:
        if not directory.is_dir():
            raise UserError(f"{directory}: not a folder; pass the multirun folders of label-noise sweeps")
    return [job.path for job in find_jobs(directories) if job.summary is not None]


def measure(job: Path) -> dict[str, float]:
    found = {}
    for name, prefix in CHECKPOINTS:
        path = job / "checkpoints" / name
        if path.is_file():
            found |= {prefix + key: value for key, value in memorisation(load_trained_model(path)).items()}
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", nargs="+", type=Path, help="label-noise sweep folders (multirun/...)")
    parser.add_argument("--force", action="store_true", help="measure again where memorisation.json is up to date")
    args = parser.parse_args(argv)
    quiet_library_noise()
    with report_user_errors():
        jobs = finished_jobs(args.dirs)
        if not jobs:
            raise UserError(
                f"{', '.join(map(str, args.dirs))}: no finished job (no */.hydra/overrides.yaml with summary.json)"
            )
        written = 0
        for number, job in enumerate(jobs, 1):
            out = job / FILE
            if not args.force and out.exists() and out.stat().st_mtime >= (job / "summary.json").stat().st_mtime:
                continue
            if not (job / "checkpoints" / "best.ckpt").is_file():
                print(f"[{number}/{len(jobs)}] {job}: no checkpoints/best.ckpt, skipped")
                continue
            found = measure(job)
            out.write_text(json.dumps(found, indent=2) + "\n")
            written += 1
            last = found.get("last/train/memorised", float("nan"))
            print(f"[{number}/{len(jobs)}] {job}: memorised {found['train/memorised']:.4f} best, {last:.4f} last")
        print(f"wrote {written} {FILE}, {len(jobs) - written} up to date or skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
