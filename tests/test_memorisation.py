"""Memorised label noise (seg/inference/memorisation.py, scripts/memorisation.py): the share of flipped training
pixels a checkpoint decides as their flipped label, checked against an independent count of the same masks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from seg.data.label_noise import LabelNoise
from seg.errors import UserError
from seg.inference.checkpoint import TrainedModel
from seg.inference.memorisation import memorisation
from seg.run.train import train
from tests.conftest import compose_config, tiny_overrides

FLIPS = "data.label_noise={_target_: seg.data.label_noise.LabelNoise, level: 1.0, jitter: 0.0, drop: 0.0, flip: 0.3, seed: 7}"


class Constant(nn.Module):
    """Every pixel the same logit: all foreground (+) or all background (−), whatever the image."""

    def __init__(self, logit: float) -> None:
        super().__init__()
        self.logit = logit

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.full((image.shape[0], 1, *image.shape[2:]), self.logit)


def resolved(*overrides: str):
    return OmegaConf.create(OmegaConf.to_container(compose_config(list(overrides)), resolve=True))


def true_and_noisy_masks(config) -> tuple[np.ndarray, np.ndarray]:
    """The training masks as files hold them and as LabelNoise flips them, read without the code under test."""
    datamodule = instantiate(config.data, label_noise=None)
    datamodule.prepare_data()
    datamodule.setup("fit")
    noise = LabelNoise(level=1.0, jitter=0.0, drop=0.0, flip=0.3, seed=7)
    train = datamodule.splits["train"]
    true = np.stack([train[i]["mask"][0].numpy().astype(np.uint8) for i in range(len(train))])
    noisy = np.stack([noise(mask, i) for i, mask in enumerate(true)])
    return true.astype(bool), noisy.astype(bool)


@pytest.mark.parametrize("logit", [10.0, -10.0])
def test_a_constant_decision_memorises_exactly_the_flips_toward_it(tmp_path, logit):
    config = resolved(*tiny_overrides(tmp_path), FLIPS)
    model = TrainedModel(net=Constant(logit), head=instantiate(config.head), config=config)
    found = memorisation(model)
    true, noisy = true_and_noisy_masks(config)
    flipped, decided = true != noisy, logit > 0
    assert found["flipped"] == pytest.approx(flipped.mean()) == pytest.approx(0.3, abs=0.02)
    # All foreground follows a flip exactly where the truth was background, and gets the rest right where it is
    # foreground; all background the other way round.
    assert found["memorised"] == pytest.approx((noisy[flipped] == decided).mean())
    assert found["kept_right"] == pytest.approx((true[~flipped] == decided).mean())
    expected_clean = true.mean() if decided else 0.0
    assert found["iou_clean"] == pytest.approx(expected_clean)
    assert found["iou_noisy"] == pytest.approx(noisy.mean() if decided else 0.0)


def test_a_run_without_label_noise_is_refused_in_one_line(tmp_path):
    config = resolved(*tiny_overrides(tmp_path))
    model = TrainedModel(net=Constant(1.0), head=instantiate(config.head), config=config)
    with pytest.raises(UserError, match="trained without data.label_noise"):
        memorisation(model)


def test_the_script_measures_a_trained_noisy_run_once_and_the_atlas_reads_it(tmp_path):
    """A real run trained on flipped labels: memorisation.json beside summary.json, best and final weights both
    scored, skipped when up to date, and read by the atlas's Run as metrics of the job."""
    from scripts.memorisation import main
    from seg.study.atlas import load_runs

    sweep = tmp_path / "sweep"
    job = sweep / "0"
    config = compose_config([*tiny_overrides(tmp_path), FLIPS, f"paths.output_dir={job}", "evaluate_last=true"])
    train(config)
    (job / ".hydra").mkdir(exist_ok=True)  # what a Hydra sweep's job holds, and how jobs are found
    (job / ".hydra" / "overrides.yaml").write_text("- head=sigmoid_bce\n- seed=0\n- experiment=regime_noise\n")
    assert main([str(sweep)]) == 0
    measured = json.loads((job / "memorisation.json").read_text())
    for prefix in ("train/", "last/train/"):
        assert measured[f"{prefix}flipped"] == pytest.approx(0.3, abs=0.02)
        assert 0.0 <= measured[f"{prefix}memorised"] <= 1.0 and 0.0 < measured[f"{prefix}kept_right"] <= 1.0
    before = (job / "memorisation.json").stat().st_mtime_ns
    main([str(sweep)])
    assert (job / "memorisation.json").stat().st_mtime_ns == before  # up to date: not measured again
    (run,) = load_runs([sweep])
    assert run.metric("last/train/memorised") == measured["last/train/memorised"]


def test_the_script_names_a_folder_that_is_not_there(tmp_path, capsys):
    from scripts.memorisation import main

    with pytest.raises(SystemExit) as stopped:
        main([str(tmp_path / "nowhere")])
    assert stopped.value.code == 2
    assert "nowhere: not a folder" in capsys.readouterr().err
