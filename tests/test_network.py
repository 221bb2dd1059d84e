"""One build_network for training, checkpoints and the bench; network settings live in the model config."""

from __future__ import annotations

import torch

from seg.model.network import build_network
from tests.conftest import build_head, compose_config


def test_trainer_gpu_turns_on_channels_last_in_the_model_config_not_the_trainers():
    default, gpu = compose_config([]), compose_config(["trainer=gpu"])
    assert default.model.channels_last is False and gpu.model.channels_last is True
    assert gpu.trainer.precision == "bf16-mixed" and gpu.trainer.accelerator == "gpu"
    assert "channels_last" not in gpu.trainer and "compile" not in gpu.trainer  # all Trainer arguments now
    ddp = compose_config(["trainer=ddp"])
    assert ddp.model.channels_last is True and ddp.trainer.strategy == "ddp" and ddp.trainer.devices == 2


def test_build_network_takes_channels_from_arguments_and_applies_the_memory_format():
    cfg = compose_config(["trainer=gpu", "head=softmax_ce"])
    net = build_network(cfg.model, head=build_head("softmax_ce"), in_channels=3)
    assert net.encoder.conv1.weight.shape[1] == 3  # in_channels as passed, whatever data.in_channels says
    assert net.encoder.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert net(torch.zeros(1, 3, 64, 64)).shape == (1, 2, 64, 64)  # the head's two channels
