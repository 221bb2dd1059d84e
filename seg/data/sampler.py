"""Training order and augmentation draws as a pure function of (seed, epoch, position): resumable anywhere.

A resumed run must see exactly the batches, and the same flips of them, that an uninterrupted run sees
from the step it resumes at. Neither torch's `RandomSampler` (seeded from the global RNG when an epoch's
iterator is made) nor albumentations' own generator (advanced by every item drawn so far) can be restored
from a checkpoint, so both are replaced by values computed from the run's seed, the epoch and the item:

- epoch `e` visits the images in `randperm(n)` drawn from a generator seeded with (seed, e);
- each item is handed to the dataset as `(index, augment_seed)`, with `augment_seed` from (seed, e, index),
  and the dataset re-seeds its transform with it (`SegmentationFolder.__getitem__`).

Data-loader workers therefore do not matter either: any worker computes the same draws for an item.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized

import torch
from torch.utils.data import DistributedSampler, Sampler

from seg.adapters import batches_trained_this_epoch
from seg.data.augment import mix_seed


class EpochSampler(Sampler[tuple[int, int]]):
    """Shuffled, seeded per epoch, and able to start mid-epoch.

    Lightning calls `set_epoch` before each epoch; `resume_at(epoch, skip)` (from a checkpoint) makes the
    next iteration start at item `skip` of `epoch`'s order.
    """

    def __init__(self, size: int, *, seed: int) -> None:
        self.size = size
        self.seed = seed
        self.epoch = 0
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self._skip = epoch, 0

    def resume_at(self, epoch: int, skip: int) -> None:
        self.epoch, self._skip = epoch, skip

    def order(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(mix_seed(self.seed, epoch))
        return torch.randperm(self.size, generator=generator).tolist()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        # A generator: epoch and skip are read at the first item, after Lightning's set_epoch/resume.
        epoch, skip, self._skip = self.epoch, self._skip, 0
        for index in self.order(epoch)[skip:]:
            yield index, mix_seed(self.seed, epoch, index)

    def __len__(self) -> int:
        return self.size  # the full epoch: Lightning counts the batches it already ran after a resume


def stream_position(trainer) -> dict[str, int]:
    """Where the training stream stands at a checkpoint: the epoch of the next batch and the batches of it done.

    Checkpoints are written after a training batch (mid-epoch, or on a signal) or after the epoch's last
    batch (with its validation): `processed` counts the batches of the current epoch already trained on.
    """
    done = batches_trained_this_epoch(trainer)
    if done >= trainer.num_training_batches:
        return {"epoch": trainer.current_epoch + 1, "batches_done": 0}
    return {"epoch": trainer.current_epoch, "batches_done": done}


class EvaluationShard(DistributedSampler):
    """Rank r of w takes images r, r + w, r + 2w, ... of the split, in order: every image once over all ranks.

    A torch DistributedSampler, so that Lightning keeps it instead of putting its own in its place.
    """

    def __init__(self, dataset: Sized, *, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        self.num_samples = len(self._indices())  # DistributedSampler's own count pads to a multiple of the ranks
        self.total_size = len(dataset)

    def _indices(self) -> range:
        return range(self.rank, len(self.dataset), self.num_replicas)

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices())


def evaluation_sampler(dataset: Sized, trainer) -> EvaluationShard | None:
    """Under DDP, each rank's share of a val/test split, every image exactly once; None in one process.

    Lightning's default for evaluation is torch's DistributedSampler, which pads the split with repeated
    images until it divides by the world size: those images would count twice in IoU and Dice. Here rank r
    takes images r, r + world_size, ... (shards differ by at most one image); the metrics' states are sums,
    so their sync adds every image once. Lightning keeps a DistributedSampler it is given.
    """
    if trainer is None or trainer.world_size <= 1:
        return None
    return EvaluationShard(dataset, num_replicas=trainer.world_size, rank=trainer.global_rank)
