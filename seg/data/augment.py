"""Seeding an albumentations pipeline so that its transforms draw independently of each other.

albumentations keeps its own random generators, untouched by `seed_everything`, and
`Compose.set_random_seed(s)` hands every child transform the very same seed `s`. With HorizontalFlip and
VerticalFlip at p = 0.5 each, both then flip or neither: 2 of the 4 combinations never occur. Here each
child gets its own seed, mixed from the pipeline's seed and the child's position.
"""

from __future__ import annotations

import numpy as np


def mix_seed(*keys: int) -> int:
    """A well-mixed 32-bit seed from integer keys (SeedSequence, so (0, 1) and (1, 0) differ)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


def seed_augmentation(transform, seed: int) -> None:
    """Seed `transform` and, recursively, each of its children with a distinct seed derived from `seed`."""
    if not hasattr(transform, "set_random_seed"):
        return
    transform.set_random_seed(seed)  # also seeds the children, all alike: re-seeded apart below
    for position, child in enumerate(getattr(transform, "transforms", None) or []):
        seed_augmentation(child, mix_seed(seed, position + 1))
