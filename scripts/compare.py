"""Compare heads across the runs of one or more multirun folders: report.md, curves.png and a printed table.

python scripts/compare.py multirun/compare_heads/2026-12-01_10-00-00
python scripts/compare.py DIR1 DIR2 --baseline sigmoid_bce --out reports/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from seg.errors import UserError  # noqa: E402
from seg.run.cli import report_user_errors  # noqa: E402
from seg.study.compare import build_study, find_jobs  # noqa: E402
from seg.study.report import copy_reliability_diagrams, print_table, render_markdown, write_curves  # noqa: E402


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", nargs="+", type=Path, help="multirun folders (each holds job folders)")
    parser.add_argument("--baseline", default="sigmoid_bce", help="head every other head is compared with")
    parser.add_argument("--out", type=Path, help="where report.md and curves.png go (default: the first folder)")
    args = parser.parse_args(argv)

    with report_user_errors():
        for directory in args.dirs:
            if not directory.is_dir():
                raise UserError(
                    f"{directory}: not a folder; pass the multirun folder of a sweep (e.g. multirun/compare_heads/<time>)"
                )
        jobs = find_jobs(args.dirs)
        if not jobs:
            raise UserError(
                f"{', '.join(map(str, args.dirs))}: no Hydra jobs found (no */.hydra/overrides.yaml); is this a multirun folder?"
            )
        study = build_study(jobs)
        out = args.out or args.dirs[0]
        out.mkdir(parents=True, exist_ok=True)
        curves = out / "curves.png"
        report = out / "report.md"
        drawn = curves if write_curves(study, curves) else None
        report.write_text(
            render_markdown(study, args.baseline, args.dirs, drawn, copy_reliability_diagrams(study, out))
        )
        print_table(study, args.baseline)
        print(f"wrote {report}")
        return report


if __name__ == "__main__":
    main()
