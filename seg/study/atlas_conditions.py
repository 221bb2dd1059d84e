"""What each data condition of the atlas is, measured again on the files its runs read: foreground fraction, the
best global threshold's IoU (the floor a network must clear) and, for label noise, how much of the masks it changed."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import yaml
from hydra.utils import instantiate

from seg.paths import resolve_project_path
from seg.study.baselines import threshold_iou


def condition_facts(run) -> dict:
    """Foreground fraction and best global threshold IoU of the condition's test split; for label noise, how
    much of the training masks it changed. Measured on the data folder the run read (n/a if it is gone)."""
    config = yaml.safe_load((run.path / "config.yaml").read_text())
    root = resolve_project_path(config["data"]["root"])
    facts = {"root": str(config["data"]["root"])}
    test = _read_split(root / "test")
    if test:
        images, masks = zip(*test, strict=True)
        facts["foreground"] = float(np.mean([m.mean() for m in masks]))
        facts["threshold_iou"] = threshold_iou(images, masks)["iou"]
    noise = config["data"].get("label_noise")
    train = _read_split(root / "train") if noise else []
    if train:
        noise_of = instantiate(noise)
        masks = [m for _, m in train]
        noisy = [noise_of(m.astype(np.uint8), index) for index, m in enumerate(masks)]
        facts["changed"] = float(np.mean([(a != b).mean() for a, b in zip(masks, noisy, strict=True)]))
        kept = sum(int((a & b).sum()) for a, b in zip(masks, noisy, strict=True))
        facts["foreground_kept"] = kept / max(1, sum(int(m.sum()) for m in masks))
    return facts


def _read_split(folder: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    if not (folder / "images").is_dir():
        return []
    pairs = []
    for image_file in sorted((folder / "images").glob("*.png")):
        image = cv2.imread(str(image_file), cv2.IMREAD_GRAYSCALE)
        mask = cv2.imread(str(folder / "masks" / image_file.name), cv2.IMREAD_GRAYSCALE)
        pairs.append((image, (mask > 0).astype(np.uint8)))
    return pairs
