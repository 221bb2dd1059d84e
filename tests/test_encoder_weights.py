"""model.encoder_weights_path: an encoder state dict from disk (for machines without internet), exactly or not at all."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from seg.errors import UserError
from seg.heads import SigmoidBCE
from seg.model.network import build_network, unet
from tests.conftest import compose_config, run_cli, tiny_overrides

MODEL = OmegaConf.create({"_target_": "seg.model.network.unet", "encoder_name": "resnet18", "encoder_weights": None})


def saved_encoder(tmp_path, seed: int = 7) -> tuple[str, dict[str, torch.Tensor]]:
    """An encoder state dict written the way docs/operating-point.md says (random weights: no download here)."""
    torch.manual_seed(seed)
    encoder = build_network(MODEL, head=SigmoidBCE(), in_channels=1).encoder
    path = tmp_path / "resnet18_encoder.pt"
    torch.save(encoder.state_dict(), path)
    return str(path), encoder.state_dict()


def test_the_encoder_gets_the_files_weights_and_the_decoder_is_untouched(tmp_path):
    path, state = saved_encoder(tmp_path)
    torch.manual_seed(0)
    plain = build_network(MODEL, head=SigmoidBCE(), in_channels=1)
    torch.manual_seed(0)
    loaded = build_network(MODEL, head=SigmoidBCE(), in_channels=1, encoder_weights_path=path)
    assert all(torch.equal(loaded.encoder.state_dict()[k], v) for k, v in state.items())
    assert not torch.equal(plain.encoder.conv1.weight, loaded.encoder.conv1.weight)
    assert all(torch.equal(a, b) for a, b in zip(plain.decoder.parameters(), loaded.decoder.parameters(), strict=True))


def built(in_channels: int, path: str):
    """unet() itself: build_network goes through hydra's instantiate, which wraps the UserError (train.py unwraps it)."""
    return unet(
        encoder_name="resnet18", encoder_weights=None, in_channels=in_channels, classes=1, encoder_weights_path=path
    )


def test_missing_and_unexpected_keys_are_named_in_one_line(tmp_path):
    path, state = saved_encoder(tmp_path)
    state = dict(state)
    del state["conv1.weight"]
    state["fc.weight"] = torch.zeros(3)
    torch.save(state, path)
    with pytest.raises(
        UserError,
        match=r"^model.encoder_weights_path=.*: does not fit the encoder \(1 missing key\(s\): conv1.weight; 1 unexpected key\(s\): fc.weight\); save the state dict of the same encoder_name",
    ) as error:
        built(1, path)
    assert "\n" not in str(error.value)
    with pytest.raises(
        UserError, match=r"1 tensor\(s\) of another shape \(conv1.weight: \(64, 1, 7, 7\) vs \(64, 3, 7, 7\)\)"
    ):
        built(3, saved_encoder(tmp_path)[0])
    with pytest.raises(UserError, match=r"nowhere.pt: no such file; save one with torch.save"):
        built(1, str(tmp_path / "nowhere.pt"))


@pytest.mark.slow  # a train.py subprocess
def test_a_bad_weights_file_stops_train_py_with_exit_status_2(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"not torch")
    result = run_cli(*tiny_overrides(tmp_path), f"model.encoder_weights_path={tmp_path / 'bad.pt'}", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"model.encoder_weights_path={tmp_path / 'bad.pt'}: cannot be read as a state dict" in result.stderr
    assert compose_config(tiny_overrides(tmp_path)).model.encoder_weights_path is None  # off by default
