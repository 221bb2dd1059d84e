"""Masks for image files: a file, a folder or a glob in, `<stem>.png` masks (0/255) of each input's size out.

Images are read with the training loader's reader (same channels and normalization as the checkpoint's
data config), padded on the bottom and right by reflection to a multiple of the U-Net's stride, predicted
in batches of equal padded size, and cropped back. A file that cannot be used is skipped with one line.
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

from seg.checkpoint import TrainedModel, load_trained_model, pick_device
from seg.data.collate import pad_bottom_right, padded_size
from seg.data.reading import IMAGE_SUFFIXES, read_image, to_unit_range
from seg.errors import DataError, UserError


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


def predict_files(
    model: TrainedModel,
    paths: Iterable[Path],
    *,
    batch_size: int,
    device: torch.device,
    skip: Callable[[Path, str], None],
) -> Iterator[Prediction]:
    """Predictions in batches; `skip(path, reason)` is called for each file that cannot be read."""
    data = model.config.data
    mean = np.asarray(data.mean, np.float32)  # pixel values scaled to [0, 1], as in training
    std = np.asarray(data.std, np.float32)
    pending: dict[tuple[int, int], list[tuple[Path, np.ndarray]]] = {}  # padded size -> images waiting
    for path in paths:
        try:
            image = read_image(path)
            if image.shape[2] != int(data.in_channels):
                raise DataError(f"{path}: has {image.shape[2]} channel(s) but the model takes {data.in_channels}")
        except DataError as error:
            skip(path, str(error).removeprefix(f"{path}: "))
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
    batch = np.stack([pad_bottom_right((to_unit_range(image) - mean) / std, height, width) for _, image in items])
    logits = model.net(torch.from_numpy(batch.transpose(0, 3, 1, 2)).to(device))  # (B, out, H', W')
    probability = model.head.probability(logits)[:, 0].float().cpu().numpy()  # (B, H', W')
    decision = model.head.predict(logits)[:, 0].cpu().numpy()
    for (path, image), p, d in zip(items, probability, decision, strict=True):
        h, w = image.shape[:2]
        yield Prediction(path=path, image=image, probability=p[:h, :w], mask=d[:h, :w])


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
    paths = list_inputs(str(cfg.input))
    output = Path(cfg.output).expanduser()
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"output={cfg.output}: cannot create this folder ({error.strerror}); choose another") from None
    console = Console(stderr=True)
    skipped: list[Path] = []
    written: dict[str, Path] = {}  # output stem -> input, so two inputs never write the same file

    def skip(path: Path, reason: str) -> None:
        skipped.append(path)
        console.print(f"skipped {path}: {reason}", markup=False, highlight=False, soft_wrap=True)

    start = time.perf_counter()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"predicting on {device.type}", total=len(paths))
        for prediction in predict_files(model, paths, batch_size=cfg.batch_size, device=device, skip=skip):
            if prediction.path.stem in written:
                skip(prediction.path, f"same output name as {written[prediction.path.stem]}; rename one")
            else:
                write_prediction(prediction, output, probabilities=cfg.probabilities, overlays=cfg.overlays)
                written[prediction.path.stem] = prediction.path
            progress.update(task, completed=len(written) + len(skipped))
    seconds = time.perf_counter() - start
    if not written:
        raise UserError(f"input={cfg.input}: none of the {len(paths)} files could be used (see above)")
    console.print(
        f"wrote {len(written)} masks to {output} in {seconds:.1f} s"
        + (f"; skipped {len(skipped)} unreadable file(s), listed above" if skipped else ""),
        soft_wrap=True,
    )
    return {"written": len(written), "skipped": len(skipped), "seconds": seconds, "device": device.type}
