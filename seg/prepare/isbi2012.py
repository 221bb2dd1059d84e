"""ISBI 2012 EM segmentation challenge (neuronal membranes), as kept in the GitHub repository zhixuhao/unet:
data/membrane/train/image/<N>.png (512x512 grey, N = 0..29, the slices of the challenge's train-volume.tif)
and data/membrane/train/label/<N>.png (255 cell interior, 0 membrane).

Membranes are the foreground: they are what the challenge asks for (its labels mark membrane pixels black
because its metric scores a boundary map), and the thin, rare structure (about 22% of pixels) is the
harder, more informative task, like DRIVE's vessels. So each label is inverted into a PNG with 255 membrane
and 0 interior. Images are copied. `aug/` (the repository's augmented copies) and `test/` (no labels) are
not read.

The 30 slices are consecutive sections of one stack with no official labelled val or test set, and
neighbouring sections show nearly the same cells: a random split would test on near-copies of training
slices. So the split is by position in the stack, in contiguous blocks: slices 0-19 train, 20-24 val,
25-29 test, written as train/, val/, test/.
"""

from __future__ import annotations

import numpy as np

from seg.prepare.convert import open_image, png_bytes
from seg.prepare.plan import Dataset, Job, Plan, pair_jobs, paired_stems
from seg.prepare.source import Source

MEMBRANE, INTERIOR = 255, 0  # mask values written; conf/data/isbi2012.yaml lists them
SPLIT = {"val": range(20, 25), "test": range(25, 30)}  # slice numbers; every other slice is train


def split_of(slice_number: int) -> str:
    return next((split for split, numbers in SPLIT.items() if slice_number in numbers), "train")


def membrane_mask(data: bytes, name: str) -> bytes:
    """The repository's label (255 interior, 0 membrane; grey < 128 read as membrane) as 255 membrane, 0 interior."""
    membrane = np.asarray(open_image(data, name).convert("L")) < 128  # (H, W)
    return png_bytes(np.where(membrane, MEMBRANE, INTERIOR).astype(np.uint8))


def plan(source: Source) -> Plan:
    images = {match[1]: m for match, m in source.matching(r"membrane/train/image/(\d+)\.png")}
    labels = {match[1]: m for match, m in source.matching(r"membrane/train/label/(\d+)\.png")}
    stems, warnings = paired_stems(
        source,
        images,
        labels,
        "ISBI 2012 membranes (zhixuhao/unet)",
        "data/membrane/train/image/<N>.png and data/membrane/train/label/<N>.png",
    )
    jobs: list[Job] = []
    counts = {"train": 0, "val": 0, "test": 0}
    for stem in sorted(stems, key=int):
        split, name = split_of(int(stem)), f"slice_{int(stem):02d}.png"
        label = labels[stem]
        convert = lambda data, path=label.path: membrane_mask(data[0], path)  # noqa: E731
        jobs += pair_jobs(split, Job(name, [images[stem]]), Job(name, [label], convert=convert))
        counts[split] += 1
    counts = {split: n for split, n in counts.items() if n}
    notes = {
        "mask_values": {"membrane": MEMBRANE, "interior": INTERIOR},
        "split": {"val": list(SPLIT["val"]), "test": list(SPLIT["test"]), "train": "every other slice"},
    }
    return Plan(jobs, counts=counts, notes=notes, warnings=warnings)


DATASET = Dataset(
    name="isbi2012",
    title="ISBI 2012 EM membranes (30 labelled 512x512 slices, from zhixuhao/unet)",
    download="https://github.com/zhixuhao/unet (data/membrane/train)",
    archives=r"unet(?:-master)?\.zip",  # GitHub's "Download ZIP" of the repository
    plan=plan,
    foreground=(MEMBRANE,),
)
