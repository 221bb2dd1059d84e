"""The bare training loop every benchmark compares the project with: plain PyTorch, one copy.

`BareLoop` is the project's training without the framework: the same network (build_network), head loss,
optimizer, learning-rate schedule, precision and cudnn setting, built from the same config. It trains on any
iterable of batches already on the device; where the batches come from is a data source:

- `ProjectData`: the project's own DataLoaders (the datamodule's sampler, its device augmentation);
- `MinimalData`: the floor a user would write by hand: every split held as one tensor on the device, a fresh
  permutation per epoch, one flip/turn drawn for the whole batch, evaluation in `eval_batch_size` slices.

`run` is a whole run (every epoch's training, a validation IoU after each with the best epoch's weights kept in
memory, the test split scored with them); `steps_per_s` times training steps; `limit_images_per_s` times the
network alone on one batch that never leaves the device (the ceiling of both loops).
"""

from __future__ import annotations

import copy
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext

import lightning as L
import torch
from hydra.utils import instantiate

from seg.model.metrics import as_metric_input, segmentation_metrics
from seg.model.network import build_network
from seg.run.train import build_data

Batch = dict[str, torch.Tensor]  # image (B, C, H, W), mask (B, 1, H, W) {0, 1}, valid (B, 1, H, W) bool
STARTUP = "startup, wrap-up (outside Trainer.fit/validate/test)"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class BareLoop:
    """Network, head loss, optimizer and schedule of `cfg`, stepped by hand."""

    def __init__(self, cfg, *, in_channels: int, device: torch.device, total_steps: int | None = None) -> None:
        self.device = device
        self.head = instantiate(cfg.head)
        self.net = build_network(cfg.model, head=self.head, in_channels=in_channels).to(device)
        self.optimizer = instantiate(cfg.optimizer)(params=self.net.parameters())
        schedule = cfg.get("scheduler") and total_steps
        self.scheduler = instantiate(cfg.scheduler)(self.optimizer, total_steps=total_steps) if schedule else None
        bf16 = str(cfg.trainer.precision).startswith("bf16")
        self.autocast: Callable = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else nullcontext
        torch.backends.cudnn.benchmark = bool(cfg.trainer.get("benchmark"))  # as the Trainer sets it

    def step(self, batch: Batch) -> None:
        with self.autocast():
            loss = self.head.loss(self.net(batch["image"]), batch["mask"], batch["valid"])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()

    def train_epoch(self, batches: Iterable[Batch]) -> int:
        self.net.train()
        steps = 0
        for batch in batches:
            self.step(batch)
            steps += 1
        return steps

    @torch.inference_mode()
    def score(self, batches: Iterable[Batch]) -> float:
        """Dataset-level IoU of the head's decision (the project's metric objects, fed as validation feeds them)."""
        self.net.eval()
        metrics = segmentation_metrics("split").to(self.device)
        for batch in batches:
            with self.autocast():
                logits = self.net(batch["image"])  # (B, 1, H, W)
            metrics.update(*as_metric_input(self.head.predict(logits), batch["mask"], batch["valid"]))
        return float(metrics.compute()["split/iou"])


class ProjectData:
    """The datamodule's loaders, each batch moved to the device and augmented there as Lightning does it."""

    def __init__(self, datamodule: L.LightningDataModule, device: torch.device) -> None:
        self.datamodule, self.device = datamodule, device
        self.train_loader = datamodule.train_dataloader()
        self.val_loader, self.test_loader = datamodule.val_dataloader(), datamodule.test_dataloader()
        self.train_batches = len(self.train_loader)

    def _moved(self, loader) -> Iterator[Batch]:
        for batch in loader:
            batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
            yield self.datamodule.on_after_batch_transfer(batch, 0)

    def train(self, epoch: int) -> Iterator[Batch]:
        self.train_loader.sampler.set_epoch(epoch)  # the project's sampler: order and draws of this epoch
        return self._moved(self.train_loader)

    def val(self) -> Iterator[Batch]:
        return self._moved(self.val_loader)

    def test(self) -> Iterator[Batch]:
        return self._moved(self.test_loader)


class MinimalData:
    """Every split as one tensor on the device; whole-batch flips; evaluation in slices."""

    def __init__(self, datamodule: L.LightningDataModule, device: torch.device, *, seed: int) -> None:
        self.device, self.seed = device, seed
        self.batch_size, self.eval_batch_size = datamodule.batch_size, datamodule.eval_batch_size
        self.splits = {name: self._stacked(datamodule.splits[name], device) for name in ("train", "val", "test")}
        self.train_batches = len(self.splits["train"]["image"]) // self.batch_size

    @staticmethod
    def _stacked(split, device: torch.device) -> Batch:
        transform, split.transform = split.transform, None  # decoded and normalized, not augmented
        items = [split[i] for i in range(len(split))]
        split.transform = transform
        return {k: torch.stack([item[k] for item in items]).to(device) for k in ("image", "mask", "valid")}

    def train(self, epoch: int) -> Iterator[Batch]:
        generator = torch.Generator().manual_seed(self.seed * 1000 + epoch)
        order = torch.randperm(len(self.splits["train"]["image"]), generator=generator).to(self.device)
        draws = torch.randint(0, 2, (self.train_batches, 3), generator=generator).tolist()
        turns = torch.randint(0, 4, (self.train_batches,), generator=generator).tolist()
        for b in range(self.train_batches):
            rows = order[b * self.batch_size : (b + 1) * self.batch_size]
            flip_h, flip_v, turn = draws[b]
            dims = [d for d, on in ((-1, flip_h), (-2, flip_v)) if on]
            yield {
                k: self._moved(v.index_select(0, rows), dims, turns[b] if turn else 0)
                for k, v in self.splits["train"].items()
            }

    @staticmethod
    def _moved(x: torch.Tensor, dims: list[int], turns: int) -> torch.Tensor:
        x = x.flip(dims) if dims else x
        return torch.rot90(x, turns, dims=(-2, -1)) if turns else x

    def _slices(self, name: str) -> Iterator[Batch]:
        split = self.splits[name]
        for start in range(0, len(split["image"]), self.eval_batch_size):
            yield {k: v[start : start + self.eval_batch_size] for k, v in split.items()}

    def val(self) -> Iterator[Batch]:
        return self._slices("val")

    def test(self) -> Iterator[Batch]:
        return self._slices("test")


class Phases:
    """Wall seconds per named phase: `with phases("validation"): ...` adds to `seconds["validation"]`."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            synchronize(self.device)
            self.seconds[name] += time.perf_counter() - start


def run(cfg, device: torch.device, *, minimal: bool) -> dict:
    """The run train() makes, as a bare loop: same seed, network, loss, optimizer and schedule; the project's
    batches (`minimal=False`, the same steps in the same order as train()) or MinimalData's."""
    phase = Phases(device)
    start = time.perf_counter()
    with phase(STARTUP):
        L.seed_everything(cfg.seed, workers=True, verbose=False)  # as train() seeds, before anything is built
        datamodule = build_data(cfg)
        data = MinimalData(datamodule, device, seed=cfg.seed) if minimal else ProjectData(datamodule, device)
        epochs = int(cfg.trainer.max_epochs)
        in_channels = datamodule.resolved()["in_channels"]
        loop = BareLoop(cfg, in_channels=in_channels, device=device, total_steps=epochs * data.train_batches)
    best_iou, best_weights, steps = float("-inf"), None, 0
    for epoch in range(epochs):
        with phase("training steps"):
            steps += loop.train_epoch(data.train(epoch))
        with phase("validation passes"):
            iou = loop.score(data.val())
            if iou > best_iou:  # strictly better, as ModelCheckpoint decides
                best_iou, best_weights = iou, copy.deepcopy(loop.net.state_dict())
    with phase("final validate + test"):
        loop.net.load_state_dict(best_weights)
        test_iou = loop.score(data.test())
    return {
        "seconds": time.perf_counter() - start,
        "phases": dict(phase.seconds),
        "steps": steps,
        "val_iou": best_iou,
        "test_iou": test_iou,
    }


def steps_per_s(cfg, device: torch.device, *, warmup: int, steps: int) -> float:
    """Training steps a second of the bare loop over the project's training batches (one epoch at most)."""
    datamodule = build_data(cfg)
    data = ProjectData(datamodule, device)
    loop = BareLoop(cfg, in_channels=datamodule.resolved()["in_channels"], device=device)
    loop.net.train()
    batches = data.train(0)
    return _timed(lambda: loop.step(next(batches)), device, warmup=warmup, steps=steps)


def limit_images_per_s(
    cfg, device: torch.device, *, warmup: int, steps: int, compile_mode: str | None = None, backend: str = "inductor"
) -> float:
    """Images a second of forward, backward and optimizer step on one batch that stays on the device: no loader,
    no framework. `compile_mode`: torch.compile the whole step (e.g. "reduce-overhead": CUDA graphs) with
    `backend` ("eager" only traces: a quick check that the step compiles at all)."""
    datamodule = build_data(cfg)
    data = ProjectData(datamodule, device)
    loop = BareLoop(cfg, in_channels=datamodule.resolved()["in_channels"], device=device)
    loop.net.train()
    batch = next(data.train(0))
    options = {"mode": compile_mode} if backend == "inductor" else {}
    step = torch.compile(loop.step, backend=backend, **options) if compile_mode else loop.step
    if compile_mode and device.type == "cuda":
        torch.compiler.cudagraph_mark_step_begin()
    per_s = _timed(lambda: step(batch), device, warmup=warmup, steps=steps)
    return per_s * batch["image"].shape[0]


def _timed(step: Callable[[], None], device: torch.device, *, warmup: int, steps: int) -> float:
    for _ in range(warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return steps / (time.perf_counter() - start)
