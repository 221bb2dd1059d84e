"""The validation pass: every image and mask decoded once at setup, before the first training step.

A scan records, per pair, what the checks need: the image's size, channels and pixel sums (for the
normalization statistics) and the mask's size and stored values. Records do not depend on the config,
so they are cached by file (path, size, modification time) in `data/.cache/scans/`: a second run over the
same files decodes nothing, and a changed or added file is the only one decoded again. The checks
(`problems`) then apply the run's mask policy and channel count to the records, which takes milliseconds.

Bad data is reported as one DataError naming the first bad file, what is wrong and what to do, with a
count of the others; the user's files are only read.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np
from filelock import FileLock
from rich.progress import Progress

from seg.data.channels import channel_mismatch
from seg.data.layout import Pair
from seg.data.masks import MaskPolicy
from seg.data.reading import FULL_SCALE, read_image, read_mask
from seg.errors import DataError
from seg.paths import PROJECT_DIR

SCAN_VERSION = 2  # bump when a record's content changes: old caches are then ignored
CACHE_DIR = PROJECT_DIR / "data" / ".cache" / "scans"
PARALLEL_FROM = 64  # fewer files than this are decoded in this process: starting workers costs more
Record = dict  # {"size": [h, w], "channels", "sum", "sumsq", "mask_size", "mask_values"} or {"error": message}


def scan(pairs: Sequence[Pair], *, workers: int, cache_dir: Path | None = None, label: str = "") -> list[Record]:
    """One record per pair, in order; decodes only pairs the cache (`cache_dir`, default CACHE_DIR) lacks."""
    keys = [_key(pair) for pair in pairs]
    cache_dir = cache_dir or CACHE_DIR
    cache_dir.mkdir(parents=True, exist_ok=True)
    cache_file = cache_dir / f"{_cache_name(pairs)}.json"
    with FileLock(cache_file.with_suffix(".lock")):  # concurrent jobs: one decodes, the others read its cache
        cached = _load(cache_file)
        missing = [i for i, key in enumerate(keys) if key not in cached]
        for i, record in zip(missing, _decode_all([pairs[i] for i in missing], workers, label), strict=True):
            cached[keys[i]] = record
        if missing:
            _save(cache_file, {key: cached[key] for key in keys})
    return [cached[key] for key in keys]


def problems(
    pairs: Sequence[Pair], records: Sequence[Record], policy: MaskPolicy, in_channels: int | None
) -> list[str]:
    """Every contract violation, one message per bad pair: `<file>: what is wrong; what to do`."""
    found = []
    for (image, mask), record in zip(pairs, records, strict=True):
        if "error" in record:
            found.append(record["error"])
        elif record["mask_size"] != record["size"]:
            (h, w), (mh, mw) = record["size"], record["mask_size"]
            found.append(
                f"{mask}: mask is {mw}x{mh} but its image {image.name} is {w}x{h}; masks must match their image's size"
            )
        elif policy.unexpected(record["mask_values"]):
            found.append(policy.unexpected_message(mask, policy.unexpected(record["mask_values"])))
        elif in_channels is not None and (
            wrong := channel_mismatch(
                image,
                record["channels"],
                in_channels,
                against="the model takes",
                fix=f"set data.in_channels={record['channels']} (or auto), or convert the images",
            )
        ):
            found.append(wrong)
    return found


def raise_problems(found: list[str], what: str) -> None:
    if found:
        more = (
            f" [{len(found) - 1} more bad file(s) in {what}, e.g. {found[1].split(': ', 1)[0]}]"
            if len(found) > 1
            else ""
        )
        raise DataError(found[0] + more)


def channel_count(pairs: Sequence[Pair], records: Sequence[Record]) -> int:
    """The one channel count of all images (data.in_channels=auto), or a DataError naming an odd one out."""
    counts: dict[int, list[Path]] = {}
    for (image, _), record in zip(pairs, records, strict=True):
        counts.setdefault(record["channels"], []).append(image)
    if len(counts) > 1:
        usual = max(counts, key=lambda c: len(counts[c]))
        odd = next(c for c in counts if c != usual)
        raise DataError(
            f"{counts[odd][0]}: has {odd} channel(s) but {len(counts[usual])} other images have {usual} "
            f"({len(counts[odd])} file(s) with {odd}); convert them so all images have the same channels"
        )
    return next(iter(counts))


def statistics(records: Iterable[Record]) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of pixel values scaled to [0, 1], over every pixel of the records."""
    records = list(records)
    pixels = sum(r["size"][0] * r["size"][1] for r in records)
    total = np.sum([r["sum"] for r in records], axis=0)
    squares = np.sum([r["sumsq"] for r in records], axis=0)
    mean = total / pixels
    std = np.sqrt(np.maximum(squares / pixels - mean**2, 0.0))
    return mean.round(6).tolist(), np.maximum(std, 1e-3).round(6).tolist()  # a constant channel: no division by 0


def decoded_bytes(records: Iterable[Record]) -> int:
    """Memory that caching the decoded images and masks would take."""
    return sum(r["size"][0] * r["size"][1] * (r["channels"] * r["bytes_per_value"] + 1) for r in records)


def inspect(pair: Pair) -> Record:
    """Decode one pair; a DataError becomes the record's error, so one bad file does not stop the others."""
    image_path, mask_path = pair
    try:
        image = read_image(image_path)
        mask = read_mask(mask_path)
    except DataError as error:
        return {"error": str(error)}
    # cv2.meanStdDev: one pass over the image in its own dtype, where numpy sums would need a float64 copy first
    mean, std = (values.ravel() / FULL_SCALE[image.dtype] for values in cv2.meanStdDev(image))
    pixels = image.shape[0] * image.shape[1]
    return {
        "size": list(image.shape[:2]),
        "channels": image.shape[2],
        "bytes_per_value": image.dtype.itemsize,
        "sum": (mean * pixels).tolist(),  # of pixel values scaled to [0, 1]
        "sumsq": ((std**2 + mean**2) * pixels).tolist(),
        "mask_size": list(mask.shape),
        "mask_values": np.unique(mask).tolist(),
    }


def _decode_all(pairs: Sequence[Pair], workers: int, label: str) -> list[Record]:
    if not pairs:
        return []
    with Progress(transient=True, disable=len(pairs) < PARALLEL_FROM) as progress:
        task = progress.add_task(f"checking {len(pairs)} {label} files".replace("  ", " "), total=len(pairs))
        if workers < 1 or len(pairs) < PARALLEL_FROM or "fork" not in multiprocessing.get_all_start_methods():
            records = []
            for pair in pairs:
                records.append(inspect(pair))
                progress.advance(task)
            return records
        # fork: the workers only decode with OpenCV and numpy; spawning would re-import torch in each.
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            records = []
            for record in pool.imap(inspect, pairs, chunksize=32):
                records.append(record)
                progress.advance(task)
            return records


def _key(pair: Pair) -> str:
    parts = []
    for path in pair:
        try:
            stat = path.stat()
        except OSError as error:
            raise DataError(f"{path}: cannot be read ({error.strerror}); check the file and its permissions") from None
        parts.append(f"{path}|{stat.st_size}|{stat.st_mtime_ns}")
    return "::".join(parts)


def _cache_name(pairs: Sequence[Pair]) -> str:
    """One cache file per dataset folder (the images' common parent), whatever the split."""
    common = os.path.commonpath([str(image.parent) for image, _ in pairs]) if pairs else ""
    return hashlib.sha1(f"{SCAN_VERSION}|{common}".encode()).hexdigest()[:16]


def _load(cache_file: Path) -> dict[str, Record]:
    try:
        return json.loads(cache_file.read_text())
    except (OSError, ValueError):
        return {}  # none yet, or damaged: decode again


def _save(cache_file: Path, records: dict[str, Record]) -> None:
    tmp = cache_file.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(records))
    os.replace(tmp, cache_file)
