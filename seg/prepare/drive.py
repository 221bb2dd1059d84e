"""DRIVE (retinal vessels): DRIVE.zip -> DRIVE/{training,test}/images/<NN>_<split>.tif (565x584 RGB),
<split>/1st_manual/<NN>_manual1.gif (vessels 255) and <split>/mask/<NN>_<split>_mask.gif (field of view).

training -> train, test -> test (only when the copy has test labels, test/1st_manual; many do not). The TIFF
images are copied. Manual labels and field of view become one PNG per image, named by the image's stem:
255 vessel, 0 background inside the field of view, 128 outside it. The preset ignores 128, so the black
border around the retina counts in neither the loss nor the metrics.
"""

from __future__ import annotations

import numpy as np

from seg.errors import DataError
from seg.prepare.convert import binary_mask, png_bytes
from seg.prepare.plan import Dataset, Job, Plan, pair_jobs
from seg.prepare.source import Source

SPLITS = {"training": "train", "test": "test"}
VESSEL, BACKGROUND, OUTSIDE = 255, 0, 128  # mask values written; conf/data/drive.yaml lists them
LABEL_SUFFIX = r"\.(?:gif|png|tif)"


def vessel_mask(manual: bytes, fov: bytes, name: str) -> bytes:
    vessels, inside = binary_mask(manual, name), binary_mask(fov, name)
    if vessels.shape != inside.shape:
        raise DataError(
            f"{name}: manual labels {vessels.shape} and field-of-view mask {inside.shape} differ in size; is the download damaged?"
        )
    mask = np.full(vessels.shape, OUTSIDE, np.uint8)  # (H, W)
    mask[inside] = BACKGROUND
    mask[inside & vessels] = VESSEL
    return png_bytes(mask)


def plan(source: Source) -> Plan:
    found = {
        kind: {(match[1].lower(), match[2]): m for match, m in source.matching(pattern)}
        for kind, pattern in {
            "image": r"(training|test)/images/(\d+)_(?:training|test)\.tif",
            "manual": rf"(training|test)/1st_manual/(\d+)_manual1{LABEL_SUFFIX}",
            "fov": rf"(training|test)/mask/(\d+)_(?:training|test)_mask{LABEL_SUFFIX}",
        }.items()
    }
    complete = found["image"].keys() & found["manual"].keys() & found["fov"].keys()
    if not complete:
        raise source.layout_error(
            "DRIVE",
            "DRIVE/training/images/*_training.tif with DRIVE/training/1st_manual/*_manual1.gif and DRIVE/training/mask/*_training_mask.gif",
        )
    jobs: list[Job] = []
    counts: dict[str, int] = {}
    warnings: list[str] = []
    for name, split in SPLITS.items():
        keys = sorted(key for key in complete if key[0] == name)
        if not keys:
            warnings.append(
                f"{name}: no images with 1st_manual labels and a field-of-view mask, split '{split}' not written"
            )
            continue
        incomplete = sorted(key for key in found["image"] if key[0] == name and key not in complete)
        warnings += [f"{found['image'][key].path}: no manual labels or field of view, skipped" for key in incomplete]
        for key in keys:
            image, manual, fov = found["image"][key], found["manual"][key], found["fov"][key]
            convert = lambda data, path=manual.path: vessel_mask(data[0], data[1], path)  # noqa: E731
            jobs += pair_jobs(split, Job(image.name, [image]), Job(f"{image.stem}.png", [manual, fov], convert=convert))
        counts[split] = len(keys)
    notes = {"mask_values": {"vessel": VESSEL, "background": BACKGROUND, "outside_field_of_view": OUTSIDE}}
    return Plan(jobs, counts=counts, notes=notes, warnings=warnings)


DATASET = Dataset(
    name="drive",
    title="DRIVE (retinal vessels, 20 labelled training images)",
    download="https://drive.grand-challenge.org/",
    archives=r"drive\.zip|training\.zip|test\.zip",  # one archive, or one per split in some copies
    plan=plan,
    foreground=(VESSEL,),
)
