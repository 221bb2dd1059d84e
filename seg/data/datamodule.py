"""The LightningDataModule over a folder dataset `root/{train,val,test}/{images,masks}/`."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.fabric.utilities.seed import pl_worker_init_function
from torch.utils.data import DataLoader, get_worker_info

from seg.data.augment import seed_augmentation
from seg.data.folder import SegmentationFolder
from seg.data.sampler import EpochSampler, evaluation_sampler, stream_position
from seg.errors import DataError
from seg.paths import resolve_project_path

SPLITS = ("train", "val", "test")


class FolderDataModule(L.LightningDataModule):
    """Train/val/test loaders over `root`; `source` (e.g. the embedded generator) fills `root` first.

    `root` is resolved against the project directory when relative, so it names the same folder from
    any working directory and inside Hydra's run directories.
    """

    def __init__(
        self,
        *,
        root: str | Path,
        in_channels: int,
        mean: list[float],
        std: list[float],
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        cache: bool = True,
        source=None,
        train_transform=None,
        label_noise=None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.root = resolve_project_path(root)
        self.in_channels = in_channels
        self.mean, self.std = list(mean), list(std)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.cache = cache
        self.source = source
        self.train_transform = train_transform
        seed_augmentation(train_transform, seed)  # Compose(seed=...) alone would seed its transforms alike
        self.label_noise = label_noise  # applied to training masks only: val and test measure the clean truth
        self.seed = seed  # training order and augmentation draws: see seg/data/sampler.py
        self.splits: dict[str, SegmentationFolder] = {}
        self._resume_position: dict[str, int] | None = None

    def prepare_data(self) -> None:
        # Lightning calls this on one process per node: the place to write files.
        if self.source is not None:
            self.source.ensure(self.root)
        if not self.root.is_dir():
            raise DataError(
                f"{self.root}: data.root not found; check the path (relative paths start at the project folder {resolve_project_path('.')})"
            )

    def setup(self, stage: str | None = None) -> None:
        for split in SPLITS:
            if split not in self.splits:
                self.splits[split] = SegmentationFolder(
                    self.root / split,
                    in_channels=self.in_channels,
                    mean=self.mean,
                    std=self.std,
                    transform=self.train_transform if split == "train" else None,
                    label_noise=self.label_noise if split == "train" else None,
                    cache=self.cache,
                )

    def _loader(self, split: str, *, shuffle: bool, batch_size: int) -> DataLoader:
        evaluation = evaluation_sampler(self.splits[split], self.trainer)  # None in one process; see sampler.py
        sampler = self._training_sampler(split, batch_size) if shuffle else evaluation
        return DataLoader(
            self.splits[split],
            batch_size=batch_size,
            sampler=sampler,
            shuffle=shuffle and sampler is None,
            drop_last=shuffle,  # no tiny last training batch (noisy BatchNorm); evaluation sees every image
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            worker_init_fn=_seed_worker,
        )

    def _training_sampler(self, split: str, batch_size: int) -> EpochSampler | None:
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.world_size > 1:
            # Under DDP, Lightning shards the data with its DistributedSampler (shuffle=True): order and
            # augmentation are then seeded per epoch and worker, reproducible but not resumable mid-epoch.
            return None
        sampler = EpochSampler(len(self.splits[split]), seed=self.seed)
        if self._resume_position is not None:
            sampler.resume_at(self._resume_position["epoch"], self._resume_position["batches_done"] * batch_size)
        return sampler

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True, batch_size=self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False, batch_size=self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False, batch_size=self.eval_batch_size)

    def state_dict(self) -> dict[str, int]:
        # Saved in every checkpoint: a run resumed from it starts the training stream where this one stood.
        trainer = getattr(self, "trainer", None)
        return stream_position(trainer) if trainer is not None and trainer.state.fn == "fit" else {}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._resume_position = dict(state_dict) or None


def _seed_worker(worker_id: int) -> None:
    """Lightning's per-worker seeding (numpy, random, torch), plus albumentations' own generator.

    Without the second part every worker would hold a copy of the same augmentation RNG and the workers
    would flip their batches identically.
    """
    pl_worker_init_function(worker_id)
    info = get_worker_info()
    seed_augmentation(getattr(info.dataset, "transform", None), info.seed % 2**32)
