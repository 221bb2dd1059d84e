"""Masks for image files: a file, a folder or a glob in, `<stem>.png` masks (0/255) of each input's size out.

Images are read with the training loader's reader (same channels and normalization as the checkpoint's
data config), padded on the bottom and right by reflection to a multiple of the U-Net's stride (the
collate's `mirror_pad`), predicted in batches of equal padded size, and cropped back. A file that cannot be
used is skipped with one line.

An image larger than a tile (`tile=`, in area) is predicted in overlapping tiles instead (seg/inference/tiling.py),
so that memory depends on the tile and `batch_size`, not on the image.

The decision is `probability >= threshold` (0.5, a number, or `val`: the checkpoint's validation-picked one),
on the flip-averaged probability with `tta=true`, then without foreground components smaller than
`min_component` pixels.
"""

from __future__ import annotations

import glob
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from rich.console import Console
from rich.progress import Progress

from seg.data.channels import channel_mismatch
from seg.data.collate import mirror_pad, padded_size
from seg.data.reading import IMAGE_SUFFIXES, normalize, read_image, to_unit_range
from seg.errors import DataError, UserError
from seg.inference.checkpoint import TrainedModel, load_trained_model, pick_device
from seg.inference.overlay import RED
from seg.inference.overlay import overlay as tint
from seg.inference.postprocess import check_min_component, remove_small_components
from seg.inference.threshold import threshold_value
from seg.inference.tiling import Tiling, tiled_probability, tiling_from_config
from seg.inference.tta import flip_averaged


def list_inputs(spec: str) -> list[Path]:
    """An image file, a folder's image files (not its subfolders), or a glob pattern's matches; sorted."""
    path = Path(spec).expanduser()
    if path.is_dir():
        found = [p for p in sorted(path.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    elif path.is_file():
        found = [path]
    else:
        found = [Path(p) for p in sorted(glob.glob(str(path), recursive=True)) if Path(p).is_file()]
    if not found:
        raise UserError(
            f"input={spec}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) there; pass a file, a folder or a glob"
        )
    return found


@dataclass
class Prediction:
    path: Path
    image: np.ndarray  # (H, W, C) uint8 or uint16, as read
    probability: np.ndarray  # (H, W) float32 in [0, 1]
    mask: np.ndarray  # (H, W) bool: probability >= the threshold, small components removed
    tiled: bool = False  # predicted in tiles (larger than a tile), not whole


@dataclass(frozen=True)
class Decision:
    """How a probability map becomes a mask (conf/predict.yaml: threshold, tta, min_component)."""

    threshold: float = 0.5
    tta: bool = False  # the probability averaged over flips (seg/inference/tta.py)
    min_component: int = 0  # foreground components of fewer pixels removed; 0: none

    def probability(self, model: TrainedModel, image: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) normalized image on the model's device -> (B, 1, H, W) float32 probability."""
        return flip_averaged(model.probability, image) if self.tta else model.probability(image)

    def mask(self, probability: np.ndarray) -> np.ndarray:
        """(H, W) probability of one image, cropped to its size -> (H, W) bool."""
        return remove_small_components(probability >= self.threshold, self.min_component)


def predict_files(
    model: TrainedModel,
    paths: Iterable[Path],
    *,
    batch_size: int,
    device: torch.device,
    skip: Callable[[Path, str], None],
    tiling: Tiling | None = None,
    decision: Decision | None = None,
) -> Iterator[Prediction]:
    """Predictions in batches; `skip(path, reason)` is called for each file that cannot be read.

    Images up to a tile's area are batched with others of the same padded size; larger ones are tiled.
    `decision`: threshold, TTA and post-processing (None: the head's own rule, probability >= 0.5).
    """
    decision = decision or Decision()
    data = model.config.data
    mean = np.asarray(data.mean, np.float32)  # pixel values scaled to [0, 1], as in training
    std = np.asarray(data.std, np.float32)
    pending: dict[tuple[int, int], list[tuple[Path, np.ndarray]]] = {}  # padded size -> images waiting
    for path in paths:
        try:
            image = read_image(path)
            if wrong := channel_mismatch(
                path, image.shape[2], int(data.in_channels), against="the model takes", fix="convert the image"
            ):
                raise DataError(wrong)
        except DataError as error:
            skip(path, str(error).removeprefix(f"{path}: "))
            continue
        if tiling and tiling.applies_to(*_padded_size(image, model.stride)):
            yield _predict_tiled(model, path, image, mean, std, device, tiling, batch_size, decision)
            continue
        bucket = pending.setdefault(_padded_size(image, model.stride), [])
        bucket.append((path, image))
        if len(bucket) == batch_size:
            yield from _predict_batch(
                model, pending.pop(_padded_size(image, model.stride)), mean, std, device, decision
            )
    for bucket in pending.values():
        yield from _predict_batch(model, bucket, mean, std, device, decision)


def _padded_size(image: np.ndarray, stride: int) -> tuple[int, int]:
    return padded_size(image.shape[0], image.shape[1], stride)


def _normalized(image: np.ndarray, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    """(H, W, C) as read -> (C, H, W) float32 the network takes."""
    return torch.from_numpy(normalize(to_unit_range(image), mean, std).transpose(2, 0, 1).copy())


@torch.inference_mode()
def _predict_batch(model, items, mean, std, device, decision: Decision) -> Iterator[Prediction]:
    height, width = _padded_size(items[0][1], model.stride)
    batch = torch.stack([mirror_pad(_normalized(image, mean, std), height, width) for _, image in items])
    probability = decision.probability(model, batch.to(device))[:, 0].float().cpu().numpy()  # (B, H', W')
    for (path, image), p in zip(items, probability, strict=True):
        h, w = image.shape[:2]
        yield Prediction(path=path, image=image, probability=p[:h, :w], mask=decision.mask(p[:h, :w]))


@torch.inference_mode()
def _predict_tiled(model, path, image, mean, std, device, tiling: Tiling, batch_size: int, decision) -> Prediction:
    def net_fn(tiles: torch.Tensor) -> torch.Tensor:
        return decision.probability(model, tiles.to(device)).float().cpu()

    probability = tiled_probability(
        _normalized(image, mean, std), net_fn, tile=tiling.tile, overlap=tiling.overlap, stride=model.stride,
        batch_size=batch_size,
    )[0].numpy()  # (H, W)  # fmt: skip
    return Prediction(path=path, image=image, probability=probability, mask=decision.mask(probability), tiled=True)


def write_prediction(prediction: Prediction, output: Path, *, probabilities: bool, overlays: bool) -> None:
    stem = prediction.path.stem
    _write(output / f"{stem}.png", prediction.mask.astype(np.uint8) * 255)
    if probabilities:
        _write(output / f"{stem}_prob.png", np.round(prediction.probability * 255).astype(np.uint8))
    if overlays:
        _write(output / f"{stem}_overlay.png", overlay(prediction.image, prediction.mask))


def overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """BGR picture of the (H, W, C) image with the (H, W) predicted foreground tinted red."""
    rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[:, :, :3]
    shown = torch.from_numpy(to_unit_range(rgb).transpose(2, 0, 1).copy())  # (3, H, W); 16-bit shown as 8-bit
    tinted = tint(shown, torch.from_numpy(mask)[None], RED).numpy().transpose(1, 2, 0)
    return cv2.cvtColor(np.ascontiguousarray(tinted * 255).astype(np.uint8), cv2.COLOR_RGB2BGR)


def _write(path: Path, picture: np.ndarray) -> None:
    if not cv2.imwrite(str(path), picture):
        raise UserError(f"{path}: could not be written; check that output= is a writable folder")


def predict(cfg) -> dict:
    """predict.py's work (conf/predict.yaml): returns counts and timing, prints progress and skipped files."""
    device = pick_device(cfg.device)
    model = load_trained_model(cfg.ckpt, device)
    tiling = tiling_from_config(cfg.tile, cfg.overlap, model.stride)
    decision = Decision(
        threshold=threshold_value(cfg.threshold, model.operating_point.get("val_threshold")),
        tta=bool(cfg.tta),
        min_component=check_min_component(cfg.min_component),
    )
    paths = list_inputs(str(cfg.input))
    output = Path(cfg.output).expanduser()
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"output={cfg.output}: cannot create this folder ({error.strerror}); choose another") from None
    console = Console(stderr=True)
    skipped: list[Path] = []
    written: dict[str, Path] = {}  # output stem -> input, so two inputs never write the same file
    tiled = 0

    def skip(path: Path, reason: str) -> None:
        skipped.append(path)
        console.print(f"skipped {path}: {reason}", markup=False, highlight=False, soft_wrap=True)

    start = time.perf_counter()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"predicting on {device.type}", total=len(paths))
        for prediction in predict_files(
            model, paths, batch_size=cfg.batch_size, device=device, skip=skip, tiling=tiling, decision=decision
        ):
            if prediction.path.stem in written:
                skip(prediction.path, f"same output name as {written[prediction.path.stem]}; rename one")
            else:
                write_prediction(prediction, output, probabilities=cfg.probabilities, overlays=cfg.overlays)
                written[prediction.path.stem] = prediction.path
                tiled += prediction.tiled
            progress.update(task, completed=len(written) + len(skipped))
    seconds = time.perf_counter() - start
    if not written:
        raise UserError(f"input={cfg.input}: none of the {len(paths)} files could be used (see above)")
    console.print(
        f"wrote {len(written)} masks to {output} in {seconds:.1f} s"
        + (f" ({tiled} predicted in {tiling.tile} px tiles overlapping by {tiling.overlap} px)" if tiled else "")
        + (f"; skipped {len(skipped)} unreadable file(s), listed above" if skipped else ""),
        soft_wrap=True,
    )
    return {
        "written": len(written),
        "skipped": len(skipped),
        "tiled": tiled,
        "seconds": seconds,
        "device": device.type,
        "threshold": decision.threshold,
    }
