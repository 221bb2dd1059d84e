"""Masks for image files: a file, a folder or a glob in, `<stem>.png` masks (0/255) of each input's size out.

Images are read with the training loader's reader (same channels and normalization as the checkpoint's
data config), padded on the bottom and right by reflection to a multiple of the U-Net's stride, predicted
in batches of equal padded size, and cropped back. A file that cannot be used is skipped with one line.

An image larger than a tile (`tile=`, in area) is predicted in overlapping tiles instead, so that memory
depends on the tile and `batch_size`, not on the image: `tiled_probability` blends the tiles' probabilities
with weights that fall off towards each tile's border, where the network sees the least context.
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
from seg.data.collate import pad_bottom_right, padded_size
from seg.data.reading import IMAGE_SUFFIXES, normalize, read_image, to_unit_range
from seg.errors import DataError, UserError
from seg.inference.checkpoint import TrainedModel, load_trained_model, pick_device

NetFn = Callable[[torch.Tensor], torch.Tensor]  # (B, C, h, w) normalized tiles -> (B, 1, h, w) probability


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
    mask: np.ndarray  # (H, W) bool: the head's decision (probability >= 0.5)
    tiled: bool = False  # predicted in tiles (larger than a tile), not whole


@dataclass(frozen=True)
class Tiling:
    """Square tiles of side `tile` px whose neighbours share `overlap` px, for images larger than a tile."""

    tile: int  # a multiple of the stride
    overlap: int  # a multiple of the stride, < tile

    def applies_to(self, height: int, width: int) -> bool:
        return height * width > self.tile**2


def tiling_from_config(tile: int | None, overlap: float, stride: int) -> Tiling | None:
    """`tile=` / `overlap=` (a fraction of the tile below 1, else px) checked once; None: every image whole."""
    if not tile:
        return None
    if tile % stride or tile < stride:
        raise UserError(f"tile={tile}: must be a multiple of {stride} (the U-Net's stride), or null to predict whole")
    pixels = overlap * tile if 0 <= overlap < 1 else overlap
    shared = int(round(pixels / stride)) * stride  # tiles start on the stride's grid, as the whole image's pixels do
    if overlap < 0 or shared >= tile:
        raise UserError(
            f"overlap={overlap}: must be a fraction of the tile in [0, 1) or px in [1, {tile}) (rounded to {stride} px)"
        )
    return Tiling(tile=tile, overlap=shared)


def predict_files(
    model: TrainedModel,
    paths: Iterable[Path],
    *,
    batch_size: int,
    device: torch.device,
    skip: Callable[[Path, str], None],
    tiling: Tiling | None = None,
) -> Iterator[Prediction]:
    """Predictions in batches; `skip(path, reason)` is called for each file that cannot be read.

    Images up to a tile's area are batched with others of the same padded size; larger ones are tiled.
    """
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
            yield _predict_tiled(model, path, image, mean, std, device, tiling, batch_size)
            continue
        bucket = pending.setdefault(_padded_size(image, model.stride), [])
        bucket.append((path, image))
        if len(bucket) == batch_size:
            yield from _predict_batch(model, pending.pop(_padded_size(image, model.stride)), mean, std, device)
    for bucket in pending.values():
        yield from _predict_batch(model, bucket, mean, std, device)


def _padded_size(image: np.ndarray, stride: int) -> tuple[int, int]:
    return padded_size(image.shape[0], image.shape[1], stride)


@torch.inference_mode()
def _predict_batch(model, items, mean, std, device) -> Iterator[Prediction]:
    height, width = _padded_size(items[0][1], model.stride)
    batch = np.stack(
        [pad_bottom_right(normalize(to_unit_range(image), mean, std), height, width) for _, image in items]
    )
    logits = model.net(torch.from_numpy(batch.transpose(0, 3, 1, 2)).to(device))  # (B, out, H', W')
    probability = model.head.probability(logits)[:, 0].float().cpu().numpy()  # (B, H', W')
    decision = model.head.predict(logits)[:, 0].cpu().numpy()
    for (path, image), p, d in zip(items, probability, decision, strict=True):
        h, w = image.shape[:2]
        yield Prediction(path=path, image=image, probability=p[:h, :w], mask=d[:h, :w])


@torch.inference_mode()
def _predict_tiled(model, path, image, mean, std, device, tiling: Tiling, batch_size: int) -> Prediction:
    normalized = torch.from_numpy(normalize(to_unit_range(image), mean, std).transpose(2, 0, 1).copy())  # (C, H, W)

    def net_fn(tiles: torch.Tensor) -> torch.Tensor:
        return model.probability(tiles.to(device)).float().cpu()

    probability = tiled_probability(
        normalized, net_fn, tile=tiling.tile, overlap=tiling.overlap, stride=model.stride, batch_size=batch_size
    )[0].numpy()  # (H, W)
    return Prediction(path=path, image=image, probability=probability, mask=probability >= 0.5, tiled=True)


def tiled_probability(
    image: torch.Tensor, net_fn: NetFn, *, tile: int, overlap: int, stride: int, batch_size: int
) -> torch.Tensor:
    """(C, H, W) normalized image, any size -> (1, H, W) probability, predicted in tiles of at most tile x tile.

    The image is mirrored out at the bottom and right to multiples of `stride` (as a whole image is), cut into
    tiles that start every `tile - overlap` px (all on the stride's grid, so each tile sees the pixels in the
    same phase of the U-Net's downsampling as the whole image does) with the last ones flush with the edge, and
    `net_fn` runs on `batch_size` tiles at a time. Each output pixel is the average of the probabilities of the
    tiles covering it, weighted by `blend_weights` (so an image that fits one tile comes out as if whole).
    Probabilities, not logits, are blended: they are bounded, so a tile that is confidently wrong at its border
    (a large logit for lack of context) cannot outvote the tiles that see the pixel well. The two sums live on
    the image's device (the CPU in predict.py, 8 bytes a pixel); only tiles go to `net_fn`.
    """
    _, height, width = image.shape
    padded_height, padded_width = padded_size(height, width, stride)
    padded = image[:, symmetric_index(height, padded_height)][:, :, symmetric_index(width, padded_width)]
    tile_h, tile_w = min(tile, padded_height), min(tile, padded_width)  # an image narrower than a tile
    corners = [
        (top, left)
        for top in tile_starts(padded_height, tile_h, tile - overlap)
        for left in tile_starts(padded_width, tile_w, tile - overlap)
    ]
    weighted_sum = torch.zeros(1, padded_height, padded_width, device=image.device)
    weight_sum = torch.zeros(1, padded_height, padded_width, device=image.device)
    for first in range(0, len(corners), batch_size):
        chunk = corners[first : first + batch_size]
        tiles = torch.stack([padded[:, top : top + tile_h, left : left + tile_w] for top, left in chunk])
        probability = net_fn(tiles)  # (b, 1, tile_h, tile_w)
        for (top, left), p in zip(chunk, probability, strict=True):
            rows = blend_weights(tile_h, at_start=top == 0, at_end=top + tile_h == padded_height)
            columns = blend_weights(tile_w, at_start=left == 0, at_end=left + tile_w == padded_width)
            weight = (rows[:, None] * columns[None, :]).to(image.device)  # (tile_h, tile_w)
            weighted_sum[:, top : top + tile_h, left : left + tile_w] += p * weight
            weight_sum[:, top : top + tile_h, left : left + tile_w] += weight
    return (weighted_sum / weight_sum)[:, :height, :width]


def tile_starts(length: int, tile: int, step: int) -> list[int]:
    """Offsets of tiles of side `tile` covering [0, length): every `step`, the last one flush with the end."""
    return [*range(0, length - tile, step), length - tile]


def blend_weights(size: int, *, at_start: bool, at_end: bool) -> torch.Tensor:
    """(size,) weights along one side of a tile: a Gaussian bump, sigma 1/8 of the side (as nnU-Net's).

    Where tiles overlap, the one that sees a pixel nearer its centre counts most, since near a tile's edge the
    network lacks the context the whole image would give. An edge that lies on the image's own edge (`at_start`,
    `at_end`) lacks nothing the whole image has, so the weight stays 1 up to it: a pixel near the image's edge
    is then taken from the tile that shares that edge, not from a neighbour that cuts the pixel's context.
    The smallest weight, exp(-8) ~ 3e-4, keeps every covered pixel defined.
    """
    offset = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    weight = torch.exp(-0.5 * (offset / (size / 8)) ** 2)
    if at_start:
        weight = torch.where(offset < 0, 1.0, weight)
    if at_end:
        weight = torch.where(offset > 0, 1.0, weight)
    return weight


def symmetric_index(length: int, padded: int) -> torch.Tensor:
    """Indices that mirror [0, length) out to `padded`, edge pixel repeated: numpy's pad(mode="symmetric")."""
    index = torch.arange(padded) % (2 * length)
    return torch.where(index < length, index, 2 * length - 1 - index)


def write_prediction(prediction: Prediction, output: Path, *, probabilities: bool, overlays: bool) -> None:
    stem = prediction.path.stem
    _write(output / f"{stem}.png", prediction.mask.astype(np.uint8) * 255)
    if probabilities:
        _write(output / f"{stem}_prob.png", np.round(prediction.probability * 255).astype(np.uint8))
    if overlays:
        _write(output / f"{stem}_overlay.png", overlay(prediction.image, prediction.mask))


def overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """BGR picture of the image with the predicted foreground tinted red."""
    rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[:, :, :3]
    bgr = cv2.cvtColor(np.ascontiguousarray(to_unit_range(rgb) * 255), cv2.COLOR_RGB2BGR)  # 16-bit shown as 8-bit
    bgr[mask] = 0.5 * bgr[mask] + 0.5 * np.array([0, 0, 255], np.float32)
    return bgr.astype(np.uint8)


def _write(path: Path, picture: np.ndarray) -> None:
    if not cv2.imwrite(str(path), picture):
        raise UserError(f"{path}: could not be written; check that output= is a writable folder")


def predict(cfg) -> dict:
    """predict.py's work (conf/predict.yaml): returns counts and timing, prints progress and skipped files."""
    device = pick_device(cfg.device)
    model = load_trained_model(cfg.ckpt, device)
    tiling = tiling_from_config(cfg.tile, cfg.overlap, model.stride)
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
            model, paths, batch_size=cfg.batch_size, device=device, skip=skip, tiling=tiling
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
    return {"written": len(written), "skipped": len(skipped), "tiled": tiled, "seconds": seconds, "device": device.type}
