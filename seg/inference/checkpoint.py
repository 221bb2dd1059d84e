"""Self-describing checkpoints: each holds its run's resolved config, so it alone rebuilds model, head and data.

`SegmentationModule.on_save_checkpoint` stores the config under `CONFIG_KEY`; predict.py, eval.py and
scripts/export.py then need only `ckpt=`, and a resumed run is checked against the config it continues
(seg/run/resume.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from seg.errors import UserError
from seg.heads import Head
from seg.model.module import CONFIG_KEY
from seg.model.network import build_network

# What the end of a run adds to best.ckpt: {"val_threshold": float, "temperature": float} (seg/inference/operating_point.py).
OPERATING_POINT_KEY = "seg_operating_point"


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint's dict on the CPU, or a UserError naming the file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found; pass ckpt=<run dir>/checkpoints/best.ckpt")
    try:
        # Our checkpoints hold only tensors and plain containers, so the safe loader reads them.
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated file, not a torch file, foreign pickle: the cause is one line
        raise UserError(
            f"{path}: cannot be read as a checkpoint ({type(error).__name__}); use a .ckpt a run wrote"
        ) from None
    if CONFIG_KEY not in checkpoint:
        raise UserError(f"{path}: no '{CONFIG_KEY}' in this checkpoint; it was not written by this project's train.py")
    return checkpoint


def saved_config(checkpoint: dict) -> DictConfig:
    return OmegaConf.create(checkpoint[CONFIG_KEY])


@dataclass
class TrainedModel:
    net: nn.Module  # (B, in_channels, H, W) normalized image -> (B, out_channels, H, W) logits; eval mode
    head: Head
    config: DictConfig  # the training run's resolved config
    operating_point: dict = field(default_factory=dict)  # val_threshold, temperature: when the run stored them

    @property
    def stride(self) -> int:
        """Input height and width must be multiples of this (the U-Net halves them `encoder_depth` times)."""
        return 2 ** int(self.config.model.get("encoder_depth", 5))

    def probability(self, image: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) normalized image -> (B, 1, H, W) foreground probability."""
        return self.head.probability(self.net(image))


def pick_device(device: str) -> torch.device:
    """`auto`: the GPU when there is one, else the CPU; anything else is a torch device string."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise UserError(f"device={device!r} is not a torch device; use auto, cpu, cuda or cuda:N") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device={device}: torch sees no CUDA GPU on this machine; use device=cpu or device=auto")
    return chosen


def load_trained_model(path: str | Path, device: str | torch.device = "cpu") -> TrainedModel:
    """Network (eval mode, on `device`), head and config, from the checkpoint alone."""
    checkpoint = read_checkpoint(path)
    config = saved_config(checkpoint)
    head = instantiate(config.head)
    # Not compiled for inference, whatever training did (configs from before model.compile existed lack the key).
    overrides = {"compile": False} if "compile" in config.model else {}
    if config.model.get("encoder_weights_path"):  # the checkpoint holds the trained weights; the file may be gone
        overrides["encoder_weights_path"] = None
    net = build_network(config.model, head=head, in_channels=int(config.data.in_channels), **overrides)
    weights = {k.removeprefix("net."): v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
    net.load_state_dict(weights)
    return TrainedModel(
        net=net.to(device).eval(),
        head=head,
        config=config,
        operating_point=dict(checkpoint.get(OPERATING_POINT_KEY, {})),
    )


def store_operating_point(path: str | Path, values: dict[str, float]) -> None:
    """Add the validation-picked threshold and temperature to a checkpoint, so eval.py and predict.py reuse them.

    Written to a temporary file and renamed over the original: an interrupted write leaves the old checkpoint.
    """
    path = Path(path)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    checkpoint[OPERATING_POINT_KEY] = {key: float(value) for key, value in values.items()}
    partial = path.with_name(path.name + ".partial")
    torch.save(checkpoint, partial)
    os.replace(partial, path)
