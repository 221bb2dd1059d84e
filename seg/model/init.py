"""Initialisation variants of the network, for the head atlas's exact controls.

tanh_mse equals sigmoid_mse at logit 2z (docs/heads.md): in weight space that is sigmoid_mse with the last
layer's initial weights x2 (and its steps scaled). `unet_scaled_last_layer` builds that initialisation alone,
so the atlas can tell what the start does from what the step size does.
"""

from __future__ import annotations

import torch
from torch import nn

from seg.model.network import unet


def scale_last_layer(net: nn.Module, factor: float) -> nn.Module:
    """Multiply the final 1x1 convolution's weight and bias by `factor`, in place: the initial logits x factor."""
    with torch.no_grad():
        for parameter in net.segmentation_head.parameters():
            parameter.mul_(factor)
    return net


def unet_scaled_last_layer(*, last_layer_scale: float, **unet_args) -> nn.Module:
    """`seg.model.network.unet` (conf/model/unet.yaml) with its last layer's initial weights x `last_layer_scale`."""
    return scale_last_layer(unet(**unet_args), last_layer_scale)
