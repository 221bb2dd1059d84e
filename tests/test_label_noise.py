"""Label noise: deterministic per (seed, image), each kind does what it says, and only training masks get it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from seg.data.datamodule import FolderDataModule
from seg.data.generate import SyntheticSource
from seg.data.label_noise import LabelNoise
from seg.data.synthetic import generate_sample

MASK = generate_sample(0, 0)[1]


def objects(mask: np.ndarray) -> int:
    return cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)[0] - 1


def test_same_seed_and_index_give_the_same_noise_and_others_differ():
    noise = LabelNoise(level=0.5, seed=3)
    assert np.array_equal(noise(MASK, 7), LabelNoise(level=0.5, seed=3)(MASK, 7))
    assert not np.array_equal(noise(MASK, 7), LabelNoise(level=0.5, seed=4)(MASK, 7))
    assert not np.array_equal(noise(MASK, 7), noise(MASK, 8))


def test_level_zero_is_the_identity():
    assert LabelNoise(level=0.0)(MASK, 0) is MASK


def test_drop_removes_whole_objects():
    dropped = LabelNoise(level=1.0, jitter=0, drop=1.0, flip=0)(MASK, 0)
    assert dropped.sum() == 0 and objects(MASK) > 0
    kept = [LabelNoise(level=0.5, jitter=0, drop=1.0, flip=0, seed=s)(MASK, 0) for s in range(20)]
    assert all(np.array_equal(k & MASK, k) for k in kept)  # nothing added, only removed
    assert 0.3 < np.mean([objects(k) / objects(MASK) for k in kept]) < 0.7


def test_jitter_moves_outlines_by_at_most_max_shift():
    jittered = LabelNoise(level=1.0, jitter=1.0, drop=0, flip=0, max_shift=2)(MASK, 0)
    assert not np.array_equal(jittered, MASK)
    grow = cv2.dilate(MASK, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    assert (jittered <= grow).all()  # never further out than 2 px


def test_flip_rate():
    flipped = LabelNoise(level=1.0, jitter=0, drop=0, flip=0.1)(np.zeros((200, 200), np.uint8), 0)
    assert flipped.mean() == pytest.approx(0.1, abs=0.01)


def test_only_training_masks_are_noisy(tmp_path):
    root = tmp_path / "ds"
    SyntheticSource(seed=0, counts={"train": 4, "val": 4, "test": 4}, size=32).ensure(root)
    clean = FolderDataModule(root=root, in_channels=1, mean=[0.5], std=[0.25], batch_size=4)
    noisy = FolderDataModule(
        root=root,
        in_channels=1,
        mean=[0.5],
        std=[0.25],
        batch_size=4,
        label_noise=LabelNoise(level=1.0, drop=1.0, flip=0),
    )
    for module in (clean, noisy):
        module.setup()
    for split in ("val", "test"):
        for i in range(4):
            assert np.array_equal(clean.splits[split][i]["mask"], noisy.splits[split][i]["mask"])
    assert all(noisy.splits["train"][i]["mask"].sum() == 0 for i in range(4))  # every object dropped
    assert any(clean.splits["train"][i]["mask"].sum() > 0 for i in range(4))
