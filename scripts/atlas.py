"""Render the head atlas from its sweep folders: report.md, heatmap.png, learning_rates.png and cells.json.

    python scripts/atlas.py multirun/atlas_lr/<time> multirun/atlas_confirm/<time> multirun/atlas_data/<time> \
        --out docs/results/atlas

Pass every folder of every arm (selection, confirmation and data sweeps, in any order); the cells are found
from each job's overrides. The report lists the confirmation commands still to run and every failed job.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from seg.errors import UserError  # noqa: E402
from seg.run.cli import report_user_errors  # noqa: E402
from seg.study.atlas import load_runs  # noqa: E402
from seg.study.atlas_report import render_atlas  # noqa: E402


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", nargs="+", type=Path, help="the arms' multirun folders")
    parser.add_argument("--out", type=Path, default=Path("docs/results/atlas"), help="where the atlas is written")
    args = parser.parse_args(argv)
    with report_user_errors():
        for directory in args.dirs:
            if not directory.is_dir():
                raise UserError(f"{directory}: not a folder; pass the multirun folders of the atlas sweeps")
        runs = load_runs(args.dirs)
        if not runs:
            raise UserError(f"{', '.join(map(str, args.dirs))}: no Hydra jobs found (no */.hydra/overrides.yaml)")
        report = render_atlas(args.dirs, runs, args.out)
        print(f"wrote {report}")
        return report


if __name__ == "__main__":
    main()
