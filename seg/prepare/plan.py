"""What a preparer returns: a `Plan` of jobs (which file goes where, converted how), and the `Dataset` it serves."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from seg.prepare.source import Member, Source

Convert = Callable[[list[bytes]], bytes]  # the bytes of the source members -> the bytes of the file to write


@dataclass
class Job:
    """One file to write at `dest` (posix, relative to out): a copy of `sources[0]`, or `convert(...)` of all."""

    dest: str
    sources: list[Member]
    convert: Convert | None = None


@dataclass
class Plan:
    jobs: list[Job]
    counts: dict[str, int]  # images per split ("all" for the images/ + masks/ layout)
    notes: dict[str, object] = field(default_factory=dict)  # recorded in prepared.json, e.g. what was converted
    warnings: list[str] = field(default_factory=list)  # printed to the user and recorded
    info: list[str] = field(default_factory=list)  # printed to the user: choices made, e.g. which archive was used


@dataclass(frozen=True)
class Dataset:
    """A public dataset: where to download it, and how its distributed layout becomes ours."""

    name: str  # the CLI name and the preset conf/data/<name>.yaml
    title: str
    download: str  # the official page
    archives: str  # regex (lower case) of its archive names, looked for inside a --src folder
    plan: Callable[[Source], Plan]
    foreground: tuple[int, ...]  # the mask values written that mean foreground: the preset's data.mask.foreground
    max_side: int | None = None  # default of --max-side


def paired_stems(source: Source, images: dict, masks: dict, title: str, expected: str) -> tuple[list[str], list[str]]:
    """(stems with both an image and a mask, one warning per file without its partner); none paired is a layout error."""
    stems = sorted(images.keys() & masks.keys())
    if not stems:
        raise source.layout_error(title, expected)
    warnings = [f"{images[s].path}: no mask, skipped" for s in sorted(images.keys() - masks.keys())]
    warnings += [f"{masks[s].path}: no image, skipped" for s in sorted(masks.keys() - images.keys())]
    return stems, warnings


def pair_jobs(split: str | None, image: Job, mask: Job) -> list[Job]:
    """The two jobs of an image/mask pair, placed in `split/` (None: the images/ + masks/ layout)."""
    prefix = f"{split}/" if split else ""
    image.dest = f"{prefix}images/{image.dest}"
    mask.dest = f"{prefix}masks/{mask.dest}"
    return [image, mask]
