"""The network: an smp U-Net with raw logits out, and the one function that builds it from a config.

Training (seg/run/train.py), checkpoint loading (seg/inference/checkpoint.py) and the benchmark (scripts/bench.py) all call
`build_network`, so the head's channel count and the data's settled channel count reach the network the same
way everywhere: as arguments, not through config interpolation.
"""

from __future__ import annotations

from pathlib import Path

import segmentation_models_pytorch as smp
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from seg.errors import UserError
from seg.heads import Head

SHOWN_KEYS = 5  # missing or unexpected keys named in the error, of how many


def unet(
    *, channels_last: bool = False, compile: bool = False, encoder_weights_path: str | None = None, **unet_args
) -> nn.Module:
    """`smp.Unet(**unet_args)` (conf/model/unet.yaml), in NHWC memory format and/or torch.compiled if asked.

    encoder_weights_path: a state dict of the encoder saved with torch.save, loaded in place of a download
    (docs/operating-point.md, "Pretrained encoders offline"). channels_last: conv outputs follow the weights'
    format, which tensor cores read fastest (trainer=gpu turns it on). compile: nn.Module.compile, in place, so
    the state dict keeps its keys and checkpoints load without the compiler.
    """
    net = smp.Unet(**unet_args)
    if encoder_weights_path:
        load_encoder_weights(net.encoder, Path(encoder_weights_path).expanduser())
    if channels_last:
        net.to(memory_format=torch.channels_last)
    if compile:
        net.compile()
    return net


def build_network(model: DictConfig, *, head: Head, in_channels: int, **overrides) -> nn.Module:
    """The network of `model` (conf/model/*.yaml) for `head` on images of `in_channels` channels.

    (B, in_channels, H, W) normalized image -> (B, head.out_channels, H, W) logits. `overrides` replace config
    values, e.g. compile=False where a checkpoint is loaded for inference.
    """
    return instantiate(model, classes=head.out_channels, in_channels=in_channels, **overrides)


def load_encoder_weights(encoder: nn.Module, path: Path) -> None:
    """Load a state dict file into `encoder`, exactly: every key present and no other, every shape equal."""
    key = "model.encoder_weights_path"
    if not path.is_file():
        raise UserError(f"{key}={path}: no such file; save one with torch.save(encoder.state_dict(), path)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # not a torch file, a pickle of objects: the cause is one line
        raise UserError(f"{key}={path}: cannot be read as a state dict ({type(error).__name__})") from None
    if not isinstance(state, dict):
        raise UserError(f"{key}={path}: holds a {type(state).__name__}, not a state dict; save encoder.state_dict()")
    expected = encoder.state_dict()
    missing, unexpected = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected.keys())
    if missing or unexpected:
        raise UserError(
            f"{key}={path}: does not fit the encoder ({_named(missing=missing, unexpected=unexpected)});"
            " save the state dict of the same encoder_name and encoder_depth (docs/operating-point.md)"
        )
    shapes = [
        f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items() if state[k].shape != v.shape
    ]
    if shapes:
        raise UserError(
            f"{key}={path}: {len(shapes)} tensor(s) of another shape ({'; '.join(shapes[:SHOWN_KEYS])}); save the"
            " encoder built with this in_channels (smp.encoders.get_encoder(..., in_channels=C))"
        )
    encoder.load_state_dict(state)


def _named(**groups: list[str]) -> str:
    """`2 missing keys: a, b; 1 unexpected key: c`, at most SHOWN_KEYS of each named."""
    parts = []
    for what, keys in groups.items():
        if keys:
            more = f" and {len(keys) - SHOWN_KEYS} more" if len(keys) > SHOWN_KEYS else ""
            parts.append(f"{len(keys)} {what} key(s): {', '.join(keys[:SHOWN_KEYS])}{more}")
    return "; ".join(parts)
