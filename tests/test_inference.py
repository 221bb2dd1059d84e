"""predict.py, eval.py and scripts/export.py on a checkpoint from a tiny real run: only `ckpt=` is needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from seg.checkpoint import load_trained_model
from seg.evaluate import evaluate
from seg.export import export
from seg.paths import PROJECT_DIR
from seg.predict import predict
from seg.train import train
from tests.conftest import CONF_DIR, compose_config, tiny_overrides


def compose_entry(config_name: str, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> dict:
    """A 2-epoch tiny run of the tanh head (whose probability is not a plain sigmoid)."""
    tmp = tmp_path_factory.mktemp("tiny")
    summary = train(compose_config([*tiny_overrides(tmp), "trainer.max_epochs=2", "head=tanh_mse"]))
    return {**summary, "data": tmp / "data"}


def test_eval_equals_what_training_logged(tiny_run, tmp_path):
    ckpt = tiny_run["best_checkpoint"]
    report = evaluate(compose_entry("eval", f"ckpt={ckpt}", f"output={tmp_path / 'eval.json'}"))
    assert abs(report["test/iou"] - tiny_run["test/iou"]) < 1e-6
    assert abs(report["test/dice"] - tiny_run["test/dice"]) < 1e-6
    assert json.loads((tmp_path / "eval.json").read_text())["test/iou"] == report["test/iou"]
    assert report["head"] == "tanh_mse" and report["images"] == 16 and len(report["worst"]) == 10
    spread, worst = report["per_image_iou"], [w["iou"] for w in report["worst"]]
    assert worst == sorted(worst) and worst[0] == spread["min"] <= spread["median"] <= 1.0
    assert all(w["file"].startswith("test_") for w in report["worst"])

    # Any data option and a data.root override: here the same data, named explicitly, on its val split.
    val = evaluate(
        compose_entry(
            "eval", f"ckpt={ckpt}", "split=val", "data=synthetic", f"data.root={tiny_run['data']}",
            "data.source.counts={train: 32, val: 16, test: 16}", "data.source.size=32",
            f"output={tmp_path / 'val.json'}",
        )
    )  # fmt: skip
    assert abs(val["val/iou"] - tiny_run["val/iou"]) < 1e-6 and val["data_root"] == str(tiny_run["data"])


def test_predict_writes_masks_of_each_inputs_size_and_skips_bad_files(tiny_run, tmp_path):
    images = sorted((tiny_run["data"] / "test" / "images").glob("*.png"))[:3]
    photos = tmp_path / "photos"
    photos.mkdir()
    for path in images:
        (photos / path.name).write_bytes(path.read_bytes())
    odd = cv2.imread(str(images[0]), cv2.IMREAD_UNCHANGED)[:27, :30]  # not a multiple of 32: padded, cropped back
    cv2.imwrite(str(photos / "odd.png"), odd)
    (photos / "broken.png").write_bytes(b"not a png")
    cv2.imwrite(str(photos / "colour.png"), np.zeros((32, 32, 3), np.uint8))  # 3 channels, the model takes 1

    result = predict(compose_entry("predict", f"ckpt={tiny_run['best_checkpoint']}", f"input={photos}", f"output={tmp_path / 'masks'}", "probabilities=true", "overlays=true"))  # fmt: skip
    assert (result["written"], result["skipped"]) == (4, 2)
    assert cv2.imread(str(tmp_path / "masks" / "odd.png"), cv2.IMREAD_UNCHANGED).shape == (27, 30)
    assert cv2.imread(str(tmp_path / "masks" / "odd_overlay.png")).shape == (27, 30, 3)

    # The masks are the head's decisions on the images as training normalizes them, exactly.
    model = load_trained_model(tiny_run["best_checkpoint"])
    for path in images:
        grey = cv2.imread(str(path), cv2.IMREAD_UNCHANGED).astype(np.float32)
        x = torch.from_numpy((grey - 0.5 * 255) / (0.25 * 255))[None, None]
        with torch.no_grad():
            logits = model.net(x)
        expected = model.head.predict(logits)[0, 0].numpy().astype(np.uint8) * 255
        written = cv2.imread(str(tmp_path / "masks" / path.name), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(written, expected)
        probability = cv2.imread(str(tmp_path / "masks" / f"{path.stem}_prob.png"), cv2.IMREAD_UNCHANGED)
        assert np.abs(probability / 255 - model.head.probability(logits)[0, 0].numpy()).max() <= 0.5 / 255 + 1e-6


def test_predict_cli_says_what_it_skipped(tiny_run, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "broken.png").write_bytes(b"not a png")
    image = next((tiny_run["data"] / "test" / "images").glob("*.png"))
    (tmp_path / "in" / image.name).write_bytes(image.read_bytes())
    result = subprocess.run(
        [sys.executable, str(PROJECT_DIR / "predict.py"), f"ckpt={tiny_run['best_checkpoint']}", f"input={tmp_path / 'in'}/*.png", f"output={tmp_path / 'out'}"],
        cwd=tmp_path, env={**os.environ, "PYTHONWARNINGS": "ignore"}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert f"skipped {tmp_path / 'in' / 'broken.png'}: cannot be decoded as an image" in lines[0]
    assert "wrote 1 masks" in lines[-1] and "skipped 1 unreadable file(s)" in lines[-1]
    assert (tmp_path / "out" / image.name).exists() and not list(tmp_path.glob("outputs"))


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_export_matches_the_pytorch_model(tiny_run, tmp_path):
    result = export(
        compose_entry(
            "export", f"ckpt={tiny_run['best_checkpoint']}", f"output={tmp_path / 'm.pt'}", "size=32", "batch_size=1"
        )
    )
    assert set(result["max_abs_diff"]) == {"32x32", "96x96"}
    assert max(result["max_abs_diff"].values()) < 1e-5
    exported = torch.jit.load(str(tmp_path / "m.pt"))
    model = load_trained_model(tiny_run["best_checkpoint"])
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        out, expected = exported(x), model.probability(x)
    assert out.shape == (2, 1, 64, 64) and out.min() >= 0 and out.max() <= 1
    assert torch.allclose(out, expected, atol=1e-5)


def test_a_checkpoint_that_is_not_ours_is_one_line(tmp_path):
    (tmp_path / "x.ckpt").write_bytes(b"garbage")
    with pytest.raises(Exception, match=r"x.ckpt: cannot be read as a checkpoint \(.*\); use a .ckpt a run wrote"):
        load_trained_model(tmp_path / "x.ckpt")
