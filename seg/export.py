"""Exporting a checkpoint to TorchScript: one file, image in, the head's foreground probability out.

TorchScript (torch.jit.trace) needs nothing beyond torch and loads without this project (`torch.jit.load`,
or libtorch from C++). ONNX is not offered: torch's ONNX exporter needs the `onnx` and `onnxscript`
packages, which this project does not install. The traced graph is checked against the PyTorch model on a
random batch at the traced size and at a larger one (a trace fixes the code path, not the input size).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from seg.checkpoint import TrainedModel, load_trained_model
from seg.errors import UserError
from seg.heads import Head


class ProbabilityModel(nn.Module):
    """(B, C, H, W) normalized image -> (B, 1, H, W) foreground probability: what the exported file computes."""

    def __init__(self, net: nn.Module, head: Head) -> None:
        super().__init__()
        self.net = net
        self.head = head  # plain object: its ops are recorded by the trace

    def forward(self, image: Tensor) -> Tensor:
        return self.head.probability(self.net(image))


def export_torchscript(model: TrainedModel, path: Path, *, batch_size: int, size: int) -> dict[str, float]:
    """Writes `path`; returns the max abs difference to the PyTorch model per checked input size."""
    if size % model.stride:
        raise UserError(f"size={size}: must be a multiple of {model.stride} (the U-Net's stride)")
    reference = ProbabilityModel(model.net, model.head).eval()
    channels = int(model.config.data.in_channels)
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(batch_size, channels, size, size, generator=generator)
    with torch.no_grad(), warnings.catch_warnings():
        # torch 2.14 marks torch.jit deprecated in favour of torch.export; the TorchScript format still loads.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # smp's shape check is traced as a constant
        torch.jit.trace(reference, example).save(str(path))
        exported = torch.jit.load(str(path))
        differences = {}
        for side in (size, size + 2 * model.stride):
            batch = torch.randn(batch_size, channels, side, side, generator=generator)
            differences[f"{side}x{side}"] = (exported(batch) - reference(batch)).abs().max().item()
    return differences


def export(cfg: DictConfig) -> dict:
    """scripts/export.py's work (conf/export.yaml)."""
    model = load_trained_model(cfg.ckpt, "cpu")
    path = Path(cfg.output) if cfg.output else Path(cfg.ckpt).with_suffix(".pt")
    differences = export_torchscript(model, path, batch_size=cfg.batch_size, size=cfg.size)
    return {"output": str(path), "head": model.head.name, "max_abs_diff": differences}
