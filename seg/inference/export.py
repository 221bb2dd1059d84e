"""Exporting a checkpoint to one file that needs neither this project nor its training code.

The file maps a normalized image (B, C, H, W) (H, W multiples of the U-Net's stride) to the head's foreground
probability (B, 1, H, W). Formats are options of conf/export.yaml (`format=onnx` or `format=torchscript`), each a
small class here: it writes the file and loads it back the way a deployment would (onnxruntime, torch.jit), so
that `export` can check the written file against the PyTorch model before the user relies on it.

ONNX is the default: deployment tools (onnxruntime, TensorRT, OpenVINO) read it, and torch marks TorchScript
deprecated. It is written by torch's `torch.export`-based exporter (the TorchScript-based one is deprecated with
TorchScript) with dynamic batch, height and width; height and width are declared as multiples of the stride,
so the graph holds for any such size, not only the traced one, and the check runs at a size and batch that
differ from the traced ones.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor, nn

from seg.errors import UserError
from seg.heads import Head
from seg.inference.checkpoint import TrainedModel, load_trained_model

ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")  # the `onnx` extra of pyproject.toml


class ProbabilityModel(nn.Module):
    """(B, C, H, W) normalized image -> (B, 1, H, W) foreground probability: what the exported file computes."""

    def __init__(self, net: nn.Module, head: Head) -> None:
        super().__init__()
        self.net = net
        self.head = head  # plain object: its ops are recorded with the network's

    def forward(self, image: Tensor) -> Tensor:
        return self.head.probability(self.net(image))


Runner = Callable[[Tensor], Tensor]  # the exported file, loaded: (B, C, H, W) image -> (B, 1, H, W) probability


class Onnx:
    """An .onnx file, checked with onnxruntime on the CPU; the normalization is in its metadata_props."""

    suffix = ".onnx"

    def __init__(self, *, opset: int) -> None:
        self.opset = opset

    def check_installed(self) -> None:
        missing = [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]
        if missing:
            raise UserError(
                f'format=onnx needs {", ".join(missing)}, not installed: pip install -e ".[onnx]"'
                " (or export with format=torchscript)"
            )

    def write(self, model: nn.Module, example: Tensor, path: Path, *, stride: int, metadata: dict[str, str]) -> None:
        # Height and width as stride x a free integer: torch.export then proves the network's shape checks
        # (smp refuses sides that are not multiples of its stride) for every size instead of fixing the traced one.
        dynamic = {
            0: torch.export.Dim("batch", min=1),
            2: stride * torch.export.Dim("height_blocks", min=1),
            3: stride * torch.export.Dim("width_blocks", min=1),
        }
        with warnings.catch_warnings(), _quiet("onnxscript", "onnx_ir"):
            warnings.simplefilter("ignore")  # torch.export's notes on its own internals; the check below is the test
            program = torch.onnx.export(
                model,
                (example,),
                dynamo=True,
                dynamic_shapes=(dynamic,),
                input_names=["image"],
                output_names=["probability"],
                opset_version=self.opset,
                verbose=False,
            )
        program.model.metadata_props.update(metadata)
        program.save(str(path))

    def load(self, path: Path) -> Runner:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda image: torch.from_numpy(session.run(None, {"image": image.numpy()})[0])


@contextmanager
def _quiet(*loggers: str) -> Iterator[None]:
    """The exporter's optimizer logs each of its passes at INFO (~15 lines under Hydra's logging): warnings only."""
    levels = {name: logging.getLogger(name).level for name in loggers}
    for name in loggers:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


class TorchScript:
    """A torch.jit.trace file (`torch.jit.load`, or libtorch from C++); deprecated by torch 2.14 but still loads."""

    suffix = ".pt"

    def check_installed(self) -> None:
        pass  # torch is all it needs

    def write(self, model: nn.Module, example: Tensor, path: Path, *, stride: int, metadata: dict[str, str]) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # smp's shape check is traced as a constant
            torch.jit.trace(model, example).save(str(path), _extra_files={"seg.json": json.dumps(metadata)})

    def load(self, path: Path) -> Runner:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(str(path))


def describe(model: TrainedModel) -> dict[str, str]:
    """What a user without this project needs to feed the exported file, stored in it (ONNX metadata_props)."""
    data = model.config.data
    return {
        "head": model.head.name,
        "in_channels": str(int(data.in_channels)),
        "channel_order": "grey" if int(data.in_channels) == 1 else "RGB",
        "mean": json.dumps(list(data.mean)),
        "std": json.dumps(list(data.std)),
        "stride": str(model.stride),
        "input": (
            "image: float32 (batch, in_channels, height, width), height and width multiples of stride (pad by"
            " mirroring); pixels scaled to [0, 1] (8-bit / 255, 16-bit / 65535), then (x - mean) / std per channel"
        ),
        "output": "probability: float32 (batch, 1, height, width), foreground where probability >= 0.5",
    }


def check_shapes(batch_size: int, size: int, stride: int) -> list[tuple[int, int, int]]:
    """(batch, height, width) the written file is compared on: the traced shape, and another batch and size."""
    return [(batch_size, size, size), (batch_size + 1, size + 2 * stride, size + stride)]


def max_differences(run: Runner, reference: nn.Module, shapes, channels: int) -> dict[str, float]:
    """Largest |exported - PyTorch| probability per shape, on random normal images (the normalized scale)."""
    generator = torch.Generator().manual_seed(0)
    differences = {}
    with torch.no_grad():
        for batch, height, width in shapes:
            image = torch.randn(batch, channels, height, width, generator=generator)
            differences[f"{batch}x{channels}x{height}x{width}"] = (run(image) - reference(image)).abs().max().item()
    return differences


def pick_format(cfg: DictConfig):
    if cfg.format not in cfg.formats:
        raise UserError(f"format={cfg.format}: unknown; use one of {', '.join(cfg.formats)}")
    exporter = instantiate(cfg.formats[cfg.format])
    exporter.check_installed()
    return exporter


def export(cfg: DictConfig) -> dict:
    """scripts/export.py's work (conf/export.yaml): write, load back, compare with PyTorch, refuse a mismatch."""
    exporter = pick_format(cfg)
    model = load_trained_model(cfg.ckpt, "cpu")
    stride = model.stride
    if cfg.size % stride or cfg.size < 2 * stride or cfg.batch_size < 2:
        # torch.export fixes a dimension it sees as 1 (a batch of 1, or a side of one stride) to that value.
        raise UserError(
            f"batch_size={cfg.batch_size} size={cfg.size}: export with batch_size >= 2 and size a multiple of"
            f" {stride} (the U-Net's stride) of at least {2 * stride}"
        )
    path = Path(cfg.output).expanduser() if cfg.output else Path(cfg.ckpt).with_suffix(exporter.suffix)
    reference = ProbabilityModel(model.net, model.head).eval()
    channels = int(model.config.data.in_channels)
    example = torch.randn(cfg.batch_size, channels, cfg.size, cfg.size, generator=torch.Generator().manual_seed(1))
    try:
        exporter.write(reference, example, path, stride=stride, metadata=describe(model))
    except OSError as error:
        raise UserError(f"output={path}: cannot be written ({error.strerror}); choose a writable path") from None
    shapes = check_shapes(cfg.batch_size, cfg.size, stride)
    differences = max_differences(exporter.load(path), reference, shapes, channels)
    worst = max(differences, key=differences.get)
    if differences[worst] > cfg.tolerance:
        path.unlink()
        raise UserError(
            f"format={cfg.format}: the exported model's probability differs from PyTorch's by"
            f" {differences[worst]:.2e} > tolerance={cfg.tolerance} at {worst}; {path} was removed (a newer"
            f" exporter or opset, or format=torchscript, may do better)"
        )
    return {"output": str(path), "format": cfg.format, "head": model.head.name, "max_abs_diff": differences}
