"""ISIC 2018 task 1 (lesion boundary): per split, an input and a ground-truth archive, e.g.
ISIC2018_Task1-2_Training_Input.zip -> ISIC2018_Task1-2_Training_Input/ISIC_0000000.jpg and
ISIC2018_Task1_Training_GroundTruth.zip -> ISIC2018_Task1_Training_GroundTruth/ISIC_0000000_segmentation.png.

Training/Validation/Test -> train/val/test; a split whose archives are not given is not written (the data
module splits it off train). Files are copied with their names: masks keep the `_segmentation` suffix
(the preset's `mask_suffix`) and their 0/255 values. Some images are 6,000+ px wide, too large to validate
at full size: by default (--max-side 1024) larger images and their masks are shrunk (masks: nearest).
"""

from __future__ import annotations

from seg.prepare.plan import Dataset, Job, Plan, pair_jobs
from seg.prepare.source import Source

SPLITS = {"training": "train", "validation": "val", "test": "test"}  # the archives' split name -> ours
MASK_SUFFIX = "_segmentation"


def plan(source: Source) -> Plan:
    images = {
        (match[1].lower(), m.stem): m
        for match, m in source.matching(r"ISIC2018_Task1-2_(Training|Validation|Test)_Input/ISIC_\d+\.jpg")
    }
    masks = {
        (match[1].lower(), m.stem.removesuffix(MASK_SUFFIX)): m
        for match, m in source.matching(
            rf"ISIC2018_Task1_(Training|Validation|Test)_GroundTruth/ISIC_\d+{MASK_SUFFIX}\.png"
        )
    }
    if not images.keys() & masks.keys():
        raise source.layout_error(
            "ISIC 2018 task 1",
            "ISIC2018_Task1-2_Training_Input/ISIC_*.jpg and ISIC2018_Task1_Training_GroundTruth/ISIC_*_segmentation.png (and the same for Validation, Test)",
        )
    jobs: list[Job] = []
    counts: dict[str, int] = {}
    warnings: list[str] = []
    for name, split in SPLITS.items():
        stems = sorted(stem for part, stem in images.keys() & masks.keys() if part == name)
        missing = sorted(stem for part, stem in images.keys() ^ masks.keys() if part == name)
        if missing and not stems:
            kind = "ground truth" if any((name, s) in images for s in missing) else "input"
            warnings.append(f"{name}: {kind} archive not given, split '{split}' not written")
            continue
        warnings += [f"{name}/{stem}: image or mask missing, skipped" for stem in missing]
        for stem in stems:
            image, mask = images[name, stem], masks[name, stem]
            jobs += pair_jobs(split, Job(image.name, [image]), Job(mask.name, [mask]))
        if stems:
            counts[split] = len(stems)
    return Plan(jobs, counts=counts, notes={"mask_suffix": MASK_SUFFIX}, warnings=warnings)


DATASET = Dataset(
    name="isic2018",
    title="ISIC 2018 task 1 (skin lesions, 2,594 training images)",
    download="https://challenge.isic-archive.com/data/#2018",
    archives=r"isic2018_task1.*\.zip",
    plan=plan,
    foreground=(255,),
    max_side=1024,
)
