"""The training order and augmentation seeds: functions of (seed, epoch, item), restartable mid-epoch."""

from __future__ import annotations

import albumentations as A
import numpy as np

from seg.data.sampler import EpochSampler


def test_each_epoch_has_its_own_fixed_order():
    sampler = EpochSampler(100, seed=0)
    first = list(sampler)
    assert sorted(i for i, _ in first) == list(range(100))
    assert list(EpochSampler(100, seed=0)) == first  # a fresh sampler (a resumed run) draws the same
    sampler.set_epoch(1)
    second = list(sampler)
    assert [i for i, _ in second] != [i for i, _ in first]
    assert [i for i, _ in EpochSampler(100, seed=1)] != [i for i, _ in first]


def test_resume_at_continues_the_same_epoch_then_starts_the_next_whole():
    whole = EpochSampler(40, seed=3)
    whole.set_epoch(2)
    expected = list(whole)
    resumed = EpochSampler(40, seed=3)
    resumed.resume_at(2, 16)  # two batches of 8 done
    resumed.set_epoch(2)  # Lightning sets the same epoch again after restoring: the position stays
    assert list(resumed) == expected[16:]
    resumed.set_epoch(3)
    assert len(list(resumed)) == 40


def test_an_items_augmentation_depends_on_seed_epoch_and_index_only():
    sampler = EpochSampler(50, seed=0)
    epoch0 = dict(sampler)
    sampler.set_epoch(1)
    epoch1 = dict(sampler)
    assert len(set(epoch0.values())) == 50 and all(epoch0[i] != epoch1[i] for i in range(50))

    flips = A.Compose([A.HorizontalFlip(p=0.5), A.RandomRotate90(p=0.5)], seed=0)
    image = np.arange(16, dtype=np.uint8).reshape(4, 4, 1)

    def augmented(seed: int) -> np.ndarray:
        flips.set_random_seed(seed)
        return flips(image=image, mask=image[:, :, 0])["image"]

    outcomes = [augmented(epoch0[i]).tobytes() for i in range(50)]
    assert [augmented(epoch0[i]).tobytes() for i in reversed(range(50))] == outcomes[::-1]  # order-free
    assert len(set(outcomes)) > 2  # and the items do not all get the same draw
