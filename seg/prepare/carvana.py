"""Carvana (Kaggle carvana-image-masking-challenge): train.zip -> train/<car>_<NN>.jpg (1918x1280) or
train_hq.zip -> train_hq/<car>_<NN>.jpg (the same photos, same names and size, at a higher JPEG quality), and
train_masks.zip -> train_masks/<car>_<NN>_mask.gif. The test set has no masks and is not used. Kaggle's
"download all" zip holds these zips; it is read as it is (see `Source`).

Given both train/ and train_hq/ (e.g. the whole bundle), train_hq/ is used: the same pictures with fewer
compression artefacts, the usual choice for this task, whose difficulty is the car's outline. Which one was
used is printed and recorded in prepared.json (`images_from`).

Each car is photographed from 16 angles: a split by image would put views of the same car in train and
test. So the split is made here, by car, with a fixed seed (SPLIT below), and written as train/val/test;
the data module then uses it as it is. Images are copied; the GIF masks (which OpenCV cannot read) become
0/255 PNGs named by the image's stem.
"""

from __future__ import annotations

import random

from seg.prepare.convert import gif_to_png
from seg.prepare.plan import Dataset, Job, Plan, pair_jobs, paired_stems
from seg.prepare.source import Member, Source

SPLIT = {"val": 0.1, "test": 0.1, "seed": 0}  # fractions of the cars (not of the images); the rest is train


def car_splits(cars: list[str]) -> dict[str, str]:
    """car id -> split: a seeded shuffle of the sorted ids, cut by SPLIT's fractions."""
    order = sorted(cars)
    random.Random(SPLIT["seed"]).shuffle(order)
    at_least = 1 if len(order) >= 3 else 0  # a handful of cars still gets a val and a test car
    n_val, n_test = (max(at_least, round(len(order) * SPLIT[split])) for split in ("val", "test"))
    return {car: "val" if i < n_val else "test" if i < n_val + n_test else "train" for i, car in enumerate(order)}


IMAGE_FOLDERS = ("train_hq", "train")  # in order of preference: see the module's docstring


def plan(source: Source) -> Plan:
    found: dict[str, dict[str, Member]] = {folder: {} for folder in IMAGE_FOLDERS}
    for match, m in source.matching(r"(train_hq|train)/([0-9a-f]+_\d+)\.jpg"):
        found[match[1].lower()][match[2]] = m
    folder = next((f for f in IMAGE_FOLDERS if found[f]), IMAGE_FOLDERS[-1])
    images = found[folder]
    masks = {match[1]: m for match, m in source.matching(r"train_masks/([0-9a-f]+_\d+)_mask\.gif")}
    stems, warnings = paired_stems(
        source,
        images,
        masks,
        "Carvana",
        "train/<car>_<NN>.jpg (train.zip) or train_hq/<car>_<NN>.jpg (train_hq.zip), and train_masks/<car>_<NN>_mask.gif (train_masks.zip)",
    )
    used = f"{folder}/ ({next(iter(images.values())).container.label})"
    info = [f"images from {used}"]
    notes: dict[str, object] = {"images_from": used}
    for other in IMAGE_FOLDERS:
        if other != folder and found[other]:
            unused = f"{other}/ ({next(iter(found[other].values())).container.label})"
            info[0] += f"; {unused} also given, not used: {folder}/ holds the same photos at a higher JPEG quality"
            notes["images_not_used"] = unused
            if missing := len(found[other].keys() - images.keys()):
                warnings.append(f"{missing} images of {other}/ are not in {folder}/, skipped; is {used} complete?")
    split_of = car_splits(sorted({stem.rsplit("_", 1)[0] for stem in stems}))
    jobs: list[Job] = []
    counts = dict.fromkeys(("train", "val", "test"), 0)
    for stem in stems:
        split = split_of[stem.rsplit("_", 1)[0]]
        mask = Job(f"{stem}.png", [masks[stem]], convert=gif_to_png(masks[stem].path))
        jobs += pair_jobs(split, Job(images[stem].name, [images[stem]]), mask)
        counts[split] += 1
    cars = {split: sum(1 for s in split_of.values() if s == split) for split in counts}
    notes["split_by_car"] = {**SPLIT, "cars": cars}
    return Plan(jobs, counts=counts, notes=notes, warnings=warnings, info=info)


DATASET = Dataset(
    name="carvana",
    title="Carvana image masking (cars, 5,088 images of 318 cars)",
    download="https://www.kaggle.com/c/carvana-image-masking-challenge/data",
    archives=r"train(_hq|_masks)?\.zip",
    plan=plan,
    foreground=(255,),
)
