"""Where a dataset's files are: the two folder layouts, pairing by stem, and the seeded split.

    root/{train,val,test}/{images,masks}/   val or test may be missing: split off train
    root/{images,masks}/                    split into train/val/test by `split` ratios

An image pairs with the mask whose stem is the image's stem + `mask_suffix` (`ISIC_0000000.jpg` with
`ISIC_0000000_segmentation.png`); extensions may differ. Splits are a function of the sorted stems and
`split.seed` alone, so every run, sweep job and DDP process gets the same one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from seg.data.reading import IMAGE_SUFFIXES, MASK_SUFFIXES
from seg.errors import DataError

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")
Pair = tuple[Path, Path]  # (image, mask)


def find_splits(root: Path, *, mask_suffix: str = "", split: Mapping | None = None) -> dict[str, list[Pair]]:
    """{"train": pairs, "val": pairs, "test": pairs}, every split non-empty, no image in two splits."""
    split = {"val": 0.1, "test": 0.1, "seed": 0, **(split or {})}
    present = [name for name in SPLITS if (root / name).is_dir()]
    if present:
        if "train" not in present:
            raise DataError(f"{root}: has {'/, '.join(present)}/ but no train/; add train/images and train/masks")
        splits = {name: list_pairs(root / name, mask_suffix) for name in present}
        for name in SPLITS:
            if name not in splits:  # split off what is left of train, val first
                splits["train"], splits[name] = _take(splits["train"], split[name], split["seed"], name, root / "train")
        return {name: splits[name] for name in SPLITS}
    if (root / "images").is_dir() or (root / "masks").is_dir():
        rest = list_pairs(root, mask_suffix)
        rest, test = _take(rest, split["test"], split["seed"], "test", root)
        train, val = _take(rest, split["val"] / max(1e-9, 1 - split["test"]), split["seed"], "val", root)
        return {"train": train, "val": val, "test": test}
    found = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir() if not p.name.startswith("."))
    raise DataError(
        f"{root}: expected train/, val/, test/ folders each with images/ and masks/, or just images/ and masks/; "
        f"found {', '.join(found[:6]) + (' ...' if len(found) > 6 else '') if found else 'nothing'}"
    )


def _take(pairs: list[Pair], fraction: float, seed: int, name: str, where: Path) -> tuple[list[Pair], list[Pair]]:
    """(rest, taken): a seeded `fraction` of `pairs` (at least one), both in stem order."""
    count = round(fraction * len(pairs))
    if fraction <= 0 or len(pairs) < 2:
        raise DataError(
            f"{where}: no {name} split: {name}/ is missing and data.split.{name}={fraction} of {len(pairs)} image(s) "
            f"leaves none; add {name}/images and {name}/masks, or set data.split.{name} between 0 and 1"
        )
    count = min(max(count, 1), len(pairs) - 1)
    chosen = set(np.random.default_rng(seed).permutation(len(pairs))[:count].tolist())
    rest = [pair for i, pair in enumerate(pairs) if i not in chosen]
    taken = [pair for i, pair in enumerate(pairs) if i in chosen]
    return rest, taken


def list_pairs(folder: Path, mask_suffix: str = "") -> list[Pair]:
    """(image, mask) paths of `folder/images` and `folder/masks`, sorted by stem, or a DataError naming what does not pair."""
    image_dir, mask_dir = folder / "images", folder / "masks"
    for sub in (image_dir, mask_dir):
        if not sub.is_dir():
            raise DataError(f"{sub}: folder not found; images/ and masks/ go side by side in {folder}")
    images = _by_stem(image_dir, IMAGE_SUFFIXES)
    masks = _by_stem(mask_dir, MASK_SUFFIXES)
    if not images:
        raise DataError(
            f"{image_dir}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder; an empty split cannot train or score"
        )
    unpaired_images = sorted(images.keys() - {_image_stem(stem, mask_suffix) for stem in masks})
    unpaired_masks = sorted(stem for stem in masks if _image_stem(stem, mask_suffix) not in images)
    if unpaired_images:
        first = images[unpaired_images[0]]
        raise DataError(
            f"{first}: no mask named {first.stem}{mask_suffix}.* in {mask_dir} ({len(unpaired_images)} image(s) without a mask); "
            f"add the masks or remove the images{_suffix_hint(unpaired_images, masks, mask_suffix)}"
        )
    if unpaired_masks:
        raise DataError(
            f"{masks[unpaired_masks[0]]}: no image named {_image_stem(unpaired_masks[0], mask_suffix) or '?'}.* in {image_dir} "
            f"({len(unpaired_masks)} mask(s) without an image); add the images or remove the masks"
        )
    by_image = {_image_stem(stem, mask_suffix): path for stem, path in masks.items()}
    return [(images[stem], by_image[stem]) for stem in sorted(images)]


def _image_stem(mask_stem: str, mask_suffix: str) -> str | None:
    if not mask_suffix:
        return mask_stem
    return mask_stem[: -len(mask_suffix)] if mask_stem.endswith(mask_suffix) else None


def _suffix_hint(unpaired: list[str], masks: dict[str, Path], mask_suffix: str) -> str:
    """When masks are named `<image stem><something>`, say which `data.mask_suffix` pairs them."""
    stem = unpaired[0]
    for mask_stem in masks:
        if mask_stem.startswith(stem) and mask_stem != stem:
            return f", or set data.mask_suffix={mask_stem[len(stem) :]!r} if {masks[mask_stem].name} is its mask"
    return ""


def _by_stem(folder: Path, suffixes: set[str]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    skipped = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():  # .DS_Store, macOS ._ forks, subfolders
            continue
        if path.suffix.lower() not in suffixes:
            skipped.append(path.name)
            continue
        if path.stem in found:
            raise DataError(f"{path}: two files share the stem '{path.stem}' (also {found[path.stem].name}); keep one")
        found[path.stem] = path
    if skipped:
        log.warning("%s: %d file(s) of other types not read, e.g. %s", folder, len(skipped), skipped[0])
    return found
