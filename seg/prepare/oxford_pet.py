"""Oxford-IIIT Pet: images.tar.gz -> images/*.jpg, annotations.tar.gz -> annotations/{trimaps/*.png,
trainval.txt,test.txt}.

The official split is kept: trainval -> train (the data module splits val off it), test -> test. Trimaps
(1 pet, 2 background, 3 border) are copied as they are; the preset makes 3 "ignore". A few "JPEGs" are not
RGB JPEGs (grey, CMYK, PNG or GIF data, an alpha channel): they are converted to RGB PNGs with the same stem,
so every image has 3 channels; a file that cannot be decoded at all is skipped with a warning. Two JPEGs
(beagle_116, chihuahua_121) are damaged but decodable and seven trimaps have no pet pixel: `write_plan`'s
checks re-encode the former as lossless PNGs and name the latter (see `seg.prepare.checks.Checks`).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from seg.prepare.convert import open_image, png_bytes
from seg.prepare.plan import Dataset, Job, Plan, pair_jobs
from seg.prepare.source import Member, Source

SPLIT_LISTS = {"trainval": "train", "test": "test"}  # annotations/<list>.txt -> our split


def plan(source: Source) -> Plan:
    images = {m.stem: m for _, m in source.matching(r"images/[^/]+\.jpg")}
    trimaps = {m.stem: m for _, m in source.matching(r"annotations/trimaps/[^/]+\.png")}
    lists = {match[1]: m for match, m in source.matching(r"annotations/(trainval|test)\.txt")}
    if not images or not trimaps or not lists:
        raise source.layout_error(
            "Oxford-IIIT Pet",
            "images/*.jpg (images.tar.gz) and annotations/trimaps/*.png, annotations/trainval.txt, test.txt (annotations.tar.gz)",
        )
    listed: list[tuple[str, str]] = []  # (split, stem)
    warnings: list[str] = []
    for name, split in SPLIT_LISTS.items():
        if name not in lists:
            warnings.append(f"annotations/{name}.txt missing: split '{split}' not written")
            continue
        for line in lists[name].read().decode().splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            stem = line.split()[0]
            if stem in images and stem in trimaps:
                listed.append((split, stem))
            else:
                warnings.append(
                    f"{stem}: in {name}.txt but its {'image' if stem not in images else 'trimap'} is missing, skipped"
                )
    # Every image is read once to find the ones that are not RGB JPEGs, in archive order (one pass over the .tar.gz).
    converted: list[str] = []
    image_jobs = {}
    in_order = sorted(listed, key=lambda entry: images[entry[1]].order)
    for _, stem in source.track(in_order, "oxford_pet: checking images"):
        image_jobs[stem] = _image_job(images[stem], converted, warnings)
    jobs: list[Job] = []
    counts = {split: 0 for split in dict.fromkeys(split for split, _ in listed)}
    for split, stem in listed:
        if image_jobs[stem] is not None:
            jobs += pair_jobs(split, image_jobs[stem], Job(trimaps[stem].name, [trimaps[stem]]))
            counts[split] += 1
    if not jobs:
        raise source.layout_error(
            "Oxford-IIIT Pet", "names in annotations/trainval.txt and test.txt that have an image and a trimap"
        )
    return Plan(jobs, counts=counts, notes={"converted_to_rgb_png": converted}, warnings=warnings)


def _image_job(member: Member, converted: list[str], warnings: list[str]) -> Job | None:
    """A copy of an RGB JPEG; anything else converted to an RGB PNG now (it is read to check it anyway)."""
    data = member.read()
    try:
        header = Image.open(io.BytesIO(data))
        is_rgb_jpeg = header.format == "JPEG" and header.mode == "RGB"
    except Exception:
        warnings.append(f"{member.path}: not an image Pillow can read, skipped")
        return None
    if is_rgb_jpeg:
        return Job(member.name, [member])
    rgb = np.asarray(open_image(data, member.path).convert("RGB"))[:, :, ::-1]  # (H, W, 3) BGR for OpenCV
    converted.append(f"{member.name} ({header.format} {header.mode})")
    encoded = png_bytes(np.ascontiguousarray(rgb))
    return Job(f"{member.stem}.png", [member], convert=lambda _: encoded)


DATASET = Dataset(
    name="oxford_pet",
    title="Oxford-IIIT Pet (37 breeds, 7,349 trimaps)",
    download="https://www.robots.ox.ac.uk/~vgg/data/pets/",
    archives=r"(images|annotations)\.tar\.gz",
    plan=plan,
    foreground=(1,),  # trimap 1: the pet
)
