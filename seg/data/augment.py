"""Seeding an albumentations pipeline so that its transforms draw independently of each other.

albumentations keeps its own random generators, untouched by `seed_everything`, and
`Compose.set_random_seed(s)` hands every child transform the very same seed `s`. With HorizontalFlip and
VerticalFlip at p = 0.5 each, both then flip or neither: 2 of the 4 combinations never occur. Here each
child gets its own seed, mixed from the pipeline's seed and the child's position.
"""

from __future__ import annotations

import numpy as np
import torch


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


class DeviceFlips:
    """Flips and 90-degree turns of whole batches on their device: one gather per batch, drawn per image.

    The same draws as conf/augment/flips.yaml's albumentations pipeline (horizontal flip, vertical flip, then a
    turn by 0-3 quarters), made for each image from its sampler seed on the host (`draw`, in the loader) and
    applied where the batch already is (`apply`, after the transfer). A batch of any size costs one index
    operation, with no per-item decoding or collation. Turns need square images.

    Where the training split cannot be one tensor (not cached, several sizes, a resize or crop, DDP), the datamodule
    calls it per item on the host instead, as an albumentations transform: `set_random_seed`, then
    `(image=, mask=)`, the same draws from the same seed.
    """

    def __init__(self, *, horizontal: float = 0.5, vertical: float = 0.5, rotate90: float = 0.5) -> None:
        self.p = np.array([horizontal, vertical, rotate90], dtype=np.float64)
        self._tables: dict[tuple, torch.Tensor] = {}
        self._seed, self._calls = 0, 0

    def set_random_seed(self, seed: int) -> None:
        self._seed, self._calls = int(seed), 0

    def __call__(self, *, image: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        """One item on the host: image (H, W, C), mask (H, W), as albumentations takes them."""
        seed = self._seed if self._calls == 0 else mix_seed(self._seed, self._calls)  # unseeded calls still differ
        self._calls += 1
        flip_h, flip_v, turns = self.draw([seed])[0].tolist()
        out = {}
        for key, x in (("image", image), ("mask", mask)):
            x = x[:, ::-1] if flip_h else x
            x = x[::-1] if flip_v else x
            out[key] = np.ascontiguousarray(np.rot90(x, turns, axes=(0, 1)))
        return out

    def draw(self, seeds: list[int]) -> torch.Tensor:
        """(B, 3) long: horizontal flip {0, 1}, vertical flip {0, 1}, quarter turns {0..3}, one row per seed."""
        u = _uniform(seeds, 4)  # (B, 4) in [0, 1): a pure function of each seed
        flips = u[:, :3] < self.p  # (B, 3): flip h, flip v, turn at all
        turns = np.where(flips[:, 2], (u[:, 3] * 4).astype(np.int64), 0)  # 0-3 quarter turns when turning
        return torch.from_numpy(np.stack([flips[:, 0], flips[:, 1], turns], axis=1).astype(np.int64))

    def apply(self, batch: dict[str, torch.Tensor], draws: torch.Tensor) -> dict[str, torch.Tensor]:
        """`image`, `mask` and `valid` (B, ., H, W) moved alike by `draws` (from `draw`, on the batch's device)."""
        image = batch["image"]
        b, _, h, w = image.shape
        code = draws[:, 0] * 8 + draws[:, 1] * 4 + draws[:, 2]  # (B,) which of the 16 combinations
        source = self._table(h, w, image.device).index_select(0, code)  # (B, H * W): output <- input pixel
        out = dict(batch)
        for key in ("image", "mask", "valid"):
            x = batch[key]  # (B, C, H, W)
            out[key] = x.flatten(2).gather(2, source[:, None].expand(b, x.shape[1], h * w)).view_as(x)
        return out

    def _table(self, h: int, w: int, device: torch.device) -> torch.Tensor:
        key = (h, w, str(device))
        if key not in self._tables:  # made once per image size and device
            self._tables[key] = _source_pixels(h, w).to(device)
        return self._tables[key]


def _source_pixels(h: int, w: int) -> torch.Tensor:
    """(16, H * W): for each (horizontal flip, vertical flip, turns) = code // 8, code // 4 % 2, code % 4, the flat
    input index of every output pixel. Flips come first, then `turns` counter-clockwise quarter turns
    (torch.rot90's sense), each mapping output (i, j) to the flipped image's (j, S - 1 - i)."""
    i = torch.arange(h).view(h, 1).expand(h, w)
    j = torch.arange(w).view(1, w).expand(h, w)
    if h == w:
        turned = [(i, j), (j, h - 1 - i), (h - 1 - i, h - 1 - j), (h - 1 - j, i)]
    else:  # odd turns would change the shape: the datamodule allows none for such images
        turned = [(i, j), (i, j), (h - 1 - i, w - 1 - j), (i, j)]
    rows = []
    for flip_h in (0, 1):
        for flip_v in (0, 1):
            for r, c in turned:
                r = h - 1 - r if flip_v else r
                c = w - 1 - c if flip_h else c
                rows.append((r * w + c).flatten())
    return torch.stack(rows)


def _uniform(seeds: list[int], count: int) -> np.ndarray:
    """(len(seeds), count) floats in [0, 1), splitmix64 of (seed, k): vectorized, unlike a generator per seed."""
    x = np.asarray(seeds, dtype=np.uint64)[:, None] * np.uint64(count) + np.arange(count, dtype=np.uint64)
    z = x + np.uint64(0x9E3779B97F4A7C15)  # uint64 arithmetic wraps around, as splitmix64 needs
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / 2.0**53


class Chain:
    """`transforms` one after the other, albumentations-style (a resize or crop, then DeviceFlips per item)."""

    def __init__(self, transforms: list) -> None:
        self.transforms = transforms

    def set_random_seed(self, seed: int) -> None:  # seed_augmentation seeds each child apart
        pass

    def __call__(self, **data):
        for transform in self.transforms:
            data = transform(**data)
        return data
