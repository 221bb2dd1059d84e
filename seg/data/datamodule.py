"""The LightningDataModule over a folder dataset: layout, validation pass, splits, loaders.

`setup` finds the splits (seg/data/layout.py), runs the validation pass over every file (seg/data/scan.py,
cached), settles the `auto` values (channels, normalization, caching, workers) and builds the datasets;
`train.build` calls it before making the model, so bad data stops a run before anything trains.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import albumentations as A
import lightning as L
import torch
from lightning.fabric.utilities.seed import pl_worker_init_function
from torch.utils.data import DataLoader, get_worker_info

from seg.data.augment import Chain, DeviceFlips, seed_augmentation
from seg.data.batches import DRAWS, EpochBatches, TensorSplit
from seg.data.channels import channel_mismatch
from seg.data.collate import PadCollate
from seg.data.folder import SegmentationFolder
from seg.data.layout import SPLITS, find_splits
from seg.data.masks import IGNORE, MaskPolicy
from seg.data.sampler import EpochSampler, evaluation_sampler, stream_position
from seg.data.scan import channel_count, decoded_bytes, problems, raise_problems, scan, statistics
from seg.errors import DataError
from seg.paths import resolve_project_path

log = logging.getLogger(__name__)
AUTO = "auto"
CACHE_LIMIT = 2 * 1024**3  # cache=auto keeps decoded images in memory up to this many bytes


class FolderDataModule(L.LightningDataModule):
    """Train/val/test loaders over `root`; `source` (e.g. the embedded generator) fills `root` first.

    `root` is resolved against the project directory when relative, so it names the same folder from
    any working directory and inside Hydra's run directories. conf/data/folder.yaml documents the keys.
    """

    def __init__(
        self,
        *,
        root: str | Path,
        in_channels: int | str = AUTO,
        mean: Sequence[float] | str = AUTO,
        std: Sequence[float] | str = AUTO,
        mask_suffix: str = "",
        mask: MaskPolicy | None = None,
        split: Mapping | None = None,
        train_resize=None,
        pad_multiple: int = 32,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int | str = 0,
        cache: bool | str = AUTO,
        source=None,
        train_transform=None,
        label_noise=None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.root = resolve_project_path(root)
        self.in_channels = _auto_or(in_channels, int, "data.in_channels")
        self.mean = _auto_or(mean, list, "data.mean")
        self.std = _auto_or(std, list, "data.std")
        self.mask_suffix = mask_suffix
        self.policy = mask or MaskPolicy()
        self.split = dict(split or {})
        self.pad_multiple = _at_least(1, pad_multiple, "data.pad_multiple")
        self.batch_size = _at_least(1, batch_size, "data.batch_size")
        self.eval_batch_size = _at_least(1, eval_batch_size or batch_size, "data.eval_batch_size")
        self.num_workers = _worker_count(num_workers)
        self.cache = cache
        self.source = source
        # On the device after the transfer (DeviceFlips, when the split can be one tensor), else per item on the host.
        self.device_augment = train_transform if isinstance(train_transform, DeviceFlips) else None
        self.train_resize = train_resize
        # Training images: first given one size (train_resize), then augmented. Seeded per item by the sampler.
        if train_resize is None:
            self.train_transform = train_transform
        elif self.device_augment is not None:
            self.train_transform = Chain([train_resize, train_transform])
        else:
            self.train_transform = A.Compose([train_resize, *([train_transform] if train_transform else [])])
        seed_augmentation(self.train_transform, seed)  # Compose(seed=...) alone would seed its transforms alike
        self.label_noise = label_noise  # applied to training masks only: val and test measure the clean truth
        self.seed = seed  # training order and augmentation draws: see seg/data/sampler.py
        self.splits: dict[str, SegmentationFolder] = {}
        self.train_tensor: TensorSplit | None = None  # the training split as one tensor (device augmentation)
        self._resume_position: dict[str, int] | None = None

    def prepare_data(self) -> None:
        # Lightning calls this on one process per node: the place to write files.
        if self.source is not None:
            self.source.ensure(self.root)
        if self.root.is_file():
            raise DataError(
                f"{self.root}: data.root is a file, not a folder; pass the folder that holds images/ and masks/"
                " (or train/, val/, test/); an archive must be extracted first (or see scripts/prepare.py)"
            )
        if not self.root.is_dir():
            raise DataError(
                f"{self.root}: data.root not found; check the path (relative paths start at the project folder {resolve_project_path('.')})"
            )

    def setup(self, stage: str | None = None) -> None:
        if self.splits:  # train.build already did: the datasets serve fit, validate and test alike
            return
        pairs = find_splits(self.root, mask_suffix=self.mask_suffix, split=self.split)
        everything = [pair for name in SPLITS for pair in pairs[name]]
        records = scan(everything, workers=self.num_workers, label=self.root.name)
        raise_problems(problems(everything, records, self.policy, self.in_channels), str(self.root))
        if self.in_channels is None:
            self.in_channels = channel_count(everything, records)
        train_records = records[: len(pairs["train"])]
        if self.mean is None or self.std is None:
            mean, std = statistics(train_records)
            self.mean = self.mean or mean
            self.std = self.std or std
            log.info("normalization measured on %d training images: mean %s, std %s", len(train_records), mean, std)
        for key, values in (("mean", self.mean), ("std", self.std)):
            if wrong := channel_mismatch(
                f"data.{key}",
                len(values),
                self.in_channels,
                against="the images have",
                fix=f"give one value per channel or set data.{key}=auto",
            ):
                raise DataError(wrong)
        if len(pairs["train"]) < self.batch_size:  # drop_last: not one batch, the run would train nothing
            raise DataError(
                f"data.batch_size={self.batch_size} but the train split of {self.root} has {len(pairs['train'])} image(s):"
                f" not one full batch to train on; set data.batch_size={len(pairs['train'])} or less, or add images"
            )
        cache = decoded_bytes(records) <= CACHE_LIMIT if self.cache == AUTO else bool(self.cache)
        for name in SPLITS:
            self.splits[name] = SegmentationFolder(
                pairs[name],
                policy=self.policy,
                mean=self.mean,
                std=self.std,
                transform=self.train_transform if name == "train" else None,
                label_noise=self.label_noise if name == "train" else None,
                cache=cache,
            )
        why_not = self._why_not_one_tensor(cache, records[: len(pairs["train"])])
        if self.device_augment is not None and why_not:
            log.info("augment=device_flips: %s (%s); flipping each image on the host instead", why_not, self.root)
        elif self.device_augment is not None:
            self.train_tensor = TensorSplit(self.splits["train"], self.device_augment)

    def _why_not_one_tensor(self, cache: bool, train_records) -> str:
        """Why the training split cannot be served as one tensor ("" if it can)."""
        sizes = {tuple(r["size"]) for r in train_records}  # (height, width)
        if self.train_resize is not None:
            return "data.train_resize gives each image its own crop or size"
        if not cache:
            return "data.cache is false"
        if len(sizes) > 1:
            return f"the training images have {len(sizes)} sizes"
        ((height, width),) = sizes
        if height != width and self.device_augment is not None and self.device_augment.p[2] > 0:
            return f"quarter turns of {width}x{height} images change their shape"
        return ""

    def foreground_fraction(self) -> float:
        """The foreground share of the training split's pixels that count (ignored ones excluded), as the loss sees
        them (label noise included): what a head's `pos_weight: auto` settles on (after setup)."""
        train = self.splits["train"]
        foreground = counted = 0
        for index in range(len(train)):
            mask = train.cached[index][1] if train.cached is not None else train._read(index)[1]
            foreground += int((mask == 1).sum())
            counted += int((mask != IGNORE).sum())
        return foreground / max(counted, 1)

    def resolved(self) -> dict:
        """The values `auto` settled on (after setup): what a checkpoint's config must record to be reused."""
        return {"in_channels": self.in_channels, "mean": list(self.mean), "std": list(self.std)}

    def _loader(self, split: str, *, shuffle: bool, batch_size: int) -> DataLoader:
        if shuffle and self.train_tensor is not None and (self.trainer is None or self.trainer.world_size == 1):
            return self._tensor_loader(batch_size)  # under DDP, per item: Lightning shards items, not batches
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
            collate_fn=PadCollate(self.pad_multiple),  # any image size; padding is marked not valid
        )

    def _tensor_loader(self, batch_size: int) -> DataLoader:
        """Whole batches of the training tensor; under DDP Lightning shares the batches out among the ranks."""
        sampler = EpochSampler(len(self.train_tensor), seed=self.seed)
        if self._resume_position is not None:
            sampler.resume_at(self._resume_position["epoch"], self._resume_position["batches_done"] * batch_size)
        return DataLoader(
            self.train_tensor,
            batch_size=None,  # the sampler yields batches and the dataset serves each whole
            sampler=EpochBatches(sampler, batch_size),
            pin_memory=torch.cuda.is_available(),
        )

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        # Lightning calls this once a batch is on the device: the training batches' flips happen there.
        if DRAWS not in batch:
            return batch
        batch = dict(batch)
        return self.device_augment.apply(batch, batch.pop(DRAWS))

    def _training_sampler(self, split: str, batch_size: int) -> EpochSampler | None:
        if self.trainer is not None and self.trainer.world_size > 1:
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
        return self.eval_dataloader("val")

    def test_dataloader(self) -> DataLoader:
        return self.eval_dataloader("test")

    def eval_dataloader(self, split: str) -> DataLoader:
        """A split in file order at full size, `eval_batch_size` at a time (what validate, test and eval.py read)."""
        return self._loader(split, shuffle=False, batch_size=self.eval_batch_size)

    def state_dict(self) -> dict[str, int]:
        # Saved in every checkpoint: a run resumed from it starts the training stream where this one stood.
        return stream_position(self.trainer) if self.trainer is not None and self.trainer.state.fn == "fit" else {}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._resume_position = dict(state_dict) or None


def _auto_or(value, kind, key: str):
    """None for `auto` (settled at setup), else the value as `kind`."""
    if value == AUTO:
        return None
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise DataError(f"{key}={value!r}: expected auto or a {kind.__name__}") from None


def _at_least(low: int, value, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise DataError(f"{key}={value!r}: must be a whole number >= {low}")
    return value


def _worker_count(num_workers: int | str) -> int:
    """`auto`: a few loader processes, leaving a core for training; 0 on a 1-core machine."""
    if num_workers == AUTO:
        return max(0, min(4, (os.cpu_count() or 1) - 1))
    return _at_least(0, num_workers, "data.num_workers")


def _seed_worker(worker_id: int) -> None:
    """Lightning's per-worker seeding (numpy, random, torch), plus albumentations' own generator.

    Without the second part every worker would hold a copy of the same augmentation RNG and the workers
    would flip their batches identically.
    """
    pl_worker_init_function(worker_id)
    info = get_worker_info()
    seed_augmentation(getattr(info.dataset, "transform", None), info.seed % 2**32)
