"""Kvasir-SEG: kvasir-seg.zip -> Kvasir-SEG/{images,masks}/<id>.jpg (+ kavsir_bboxes.json).

No official split: written as OUT/images + OUT/masks (the data module splits by `data.split`). Images are
copied. The masks are 3-channel JPEGs whose compression spreads values around 0 and 255: each is decoded to
grey and written as a single-channel PNG <id>.png, 255 where the grey is >= 128 (polyp) and 0 elsewhere,
so the preset lists the two values exactly.
"""

from __future__ import annotations

from seg.prepare.convert import threshold_to_png
from seg.prepare.plan import Dataset, Job, Plan, pair_jobs, paired_stems
from seg.prepare.source import Source

IMAGE_SUFFIX = r"\.(?:jpe?g|png)"
THRESHOLD = 128  # decoded grey >= this is polyp


def plan(source: Source) -> Plan:
    images = {m.stem: m for _, m in source.matching(rf"images/[^/]+{IMAGE_SUFFIX}")}
    masks = {m.stem: m for _, m in source.matching(rf"masks/[^/]+{IMAGE_SUFFIX}")}
    stems, warnings = paired_stems(
        source, images, masks, "Kvasir-SEG", "Kvasir-SEG/images/*.jpg and Kvasir-SEG/masks/*.jpg with the same names"
    )
    jobs: list[Job] = []
    for stem in stems:
        mask = Job(f"{stem}.png", [masks[stem]], convert=threshold_to_png(masks[stem].path, at=THRESHOLD))
        jobs += pair_jobs(None, Job(images[stem].name, [images[stem]]), mask)
    notes = {"masks": f"decoded to grey, >= {THRESHOLD} -> 255 (polyp), else 0; single-channel PNG"}
    return Plan(jobs, counts={"all": len(stems)}, notes=notes, warnings=warnings)


DATASET = Dataset(
    name="kvasir_seg",
    title="Kvasir-SEG (polyps, 1,000 images)",
    download="https://datasets.simula.no/kvasir-seg/",
    archives=r"kvasir-seg\.zip",
    plan=plan,
    foreground=(255,),
)
