"""The network: an smp U-Net with raw logits out, and the one function that builds it from a config.

Training (seg/run/train.py), checkpoint loading (seg/inference/checkpoint.py) and the benchmark (scripts/bench.py) all call
`build_network`, so the head's channel count and the data's settled channel count reach the network the same
way everywhere: as arguments, not through config interpolation.
"""

from __future__ import annotations

import segmentation_models_pytorch as smp
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from seg.heads import Head


def unet(*, channels_last: bool = False, compile: bool = False, **unet_args) -> nn.Module:
    """`smp.Unet(**unet_args)` (conf/model/unet.yaml), in NHWC memory format and/or torch.compiled if asked.

    channels_last: conv outputs follow the weights' format, which tensor cores read fastest (trainer=gpu turns
    it on). compile: nn.Module.compile, in place, so the state dict keeps its keys and checkpoints load
    without the compiler.
    """
    net = smp.Unet(**unet_args)
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
