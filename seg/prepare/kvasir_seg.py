"""Kvasir-SEG: kvasir-seg.zip -> Kvasir-SEG/{images,masks}/<id>.jpg (+ kavsir_bboxes.json).

No official split: written as OUT/images + OUT/masks (the data module splits by `data.split`). Both are
copied as they are; the masks are JPEGs whose compression spreads values around 0 and 255, so the preset
thresholds them at 128 instead of listing values.
"""

from __future__ import annotations

from seg.prepare.common import Dataset, Job, Plan, Source, pair_jobs, paired_stems

IMAGE_SUFFIX = r"\.(?:jpe?g|png)"


def plan(source: Source) -> Plan:
    images = {m.stem: m for _, m in source.matching(rf"images/[^/]+{IMAGE_SUFFIX}")}
    masks = {m.stem: m for _, m in source.matching(rf"masks/[^/]+{IMAGE_SUFFIX}")}
    stems, warnings = paired_stems(
        source, images, masks, "Kvasir-SEG", "Kvasir-SEG/images/*.jpg and Kvasir-SEG/masks/*.jpg with the same names"
    )
    jobs = [
        job for s in stems for job in pair_jobs(None, Job(images[s].name, [images[s]]), Job(masks[s].name, [masks[s]]))
    ]
    return Plan(jobs, counts={"all": len(stems)}, warnings=warnings)


DATASET = Dataset(
    name="kvasir_seg",
    title="Kvasir-SEG (polyps, 1,000 images)",
    download="https://datasets.simula.no/kvasir-seg/",
    archives=r"kvasir-seg\.zip",
    plan=plan,
)
