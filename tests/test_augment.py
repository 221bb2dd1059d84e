"""The augmentation pipeline's transforms draw independently (albumentations seeds them alike by default)."""

from __future__ import annotations

from collections import Counter

import numpy as np
from hydra.utils import instantiate

from seg.data.augment import seed_augmentation
from tests.conftest import compose_config

IMAGE = np.arange(16, dtype=np.uint8).reshape(4, 4, 1)  # every one of the 8 flips/turns gives another array


def outcomes(seeds) -> Counter:
    pipeline = instantiate(compose_config(["augment=flips"]).augment)  # the per-image albumentations pipeline
    counts = Counter()
    for seed in seeds:
        seed_augmentation(pipeline, seed)
        counts[pipeline(image=IMAGE, mask=IMAGE[:, :, 0])["image"].tobytes()] += 1
    return counts


def test_all_eight_flips_and_turns_occur_as_often_as_independent_draws_make_them():
    """Flips make {identity, h, v, h+v} equally likely; RandomRotate90 (p 0.5, k uniform in 0..3) turns by 0 or 180
    degrees with probability 0.75. So 4 outcomes have probability 0.75/4 = 0.1875 and the 4 others 0.0625."""
    counts = sorted(outcomes(range(800)).values())
    assert len(counts) == 8  # with the children seeded alike only 4 of them occur
    assert all(0.6 * 50 < c < 1.4 * 50 for c in counts[:4])
    assert all(0.8 * 150 < c < 1.2 * 150 for c in counts[4:])


def test_same_seed_same_augmentation():
    assert outcomes([5]) == outcomes([5])
