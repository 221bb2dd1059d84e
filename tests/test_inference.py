"""predict.py, eval.py and scripts/export.py on a checkpoint from a tiny real run: only `ckpt=` is needed."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from seg.errors import UserError
from seg.inference.checkpoint import load_trained_model
from seg.inference.evaluate import evaluate
from seg.inference.export import export
from seg.inference.predict import predict
from seg.paths import PROJECT_DIR
from seg.run.train import train
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


@pytest.mark.slow  # a real CLI process (imports alone take seconds); the in-process tests cover the logic
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
def test_torchscript_export_matches_the_pytorch_model(tiny_run, tmp_path):
    ckpt = tiny_run["best_checkpoint"]
    result = export(compose_entry("export", f"ckpt={ckpt}", "format=torchscript", f"output={tmp_path / 'm.pt'}"))
    assert set(result["max_abs_diff"]) == {"2x1x64x64", "3x1x128x96"}
    assert max(result["max_abs_diff"].values()) < 1e-5
    exported = torch.jit.load(str(tmp_path / "m.pt"))
    model = load_trained_model(ckpt)
    x = torch.randn(2, 1, 96, 160)
    with torch.no_grad():
        out, expected = exported(x), model.probability(x)
    assert out.shape == (2, 1, 96, 160) and out.min() >= 0 and out.max() <= 1
    assert torch.allclose(out, expected, atol=1e-5)


@pytest.fixture(scope="module")
def onnx_export(tiny_run, tmp_path_factory) -> dict:
    """The default export (format=onnx) of the tiny run, once: torch.export is the slowest step of these tests."""
    for package in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(package)
    output = tmp_path_factory.mktemp("onnx") / "best.onnx"
    return export(compose_entry("export", f"ckpt={tiny_run['best_checkpoint']}", f"output={output}"))


def test_onnx_export_runs_in_onnxruntime_at_any_batch_and_size(tiny_run, onnx_export):
    import onnxruntime

    # export's own check: onnxruntime vs PyTorch at the traced shape and at another batch and size.
    print("max abs diff, onnxruntime vs PyTorch:", onnx_export["max_abs_diff"])
    assert onnx_export["format"] == "onnx" and onnx_export["output"].endswith("best.onnx")
    assert set(onnx_export["max_abs_diff"]) == {"2x1x64x64", "3x1x128x96"}
    assert max(onnx_export["max_abs_diff"].values()) <= 1e-3  # conf/export.yaml tolerance

    # A batch and sizes it never saw, non-square: the graph holds no traced size.
    session = onnxruntime.InferenceSession(onnx_export["output"], providers=["CPUExecutionProvider"])
    model = load_trained_model(tiny_run["best_checkpoint"])
    for batch, height, width in [(1, 32, 32), (5, 160, 96)]:
        x = torch.randn(batch, 1, height, width)
        (out,) = session.run(["probability"], {"image": x.numpy()})
        with torch.no_grad():
            expected = model.probability(x).numpy()
        assert out.shape == (batch, 1, height, width)
        assert np.abs(out - expected).max() <= 1e-3

    # What a user without this project needs to feed it.
    meta = session.get_modelmeta().custom_metadata_map
    assert (meta["head"], meta["in_channels"], meta["stride"]) == ("tanh_mse", "1", "32")
    assert (json.loads(meta["mean"]), json.loads(meta["std"])) == ([0.5], [0.25])


def test_the_onnx_file_is_as_close_to_float64_as_pytorch_float32_is(tiny_run, onnx_export):
    """The export's difference from PyTorch (up to ~1e-4 on this model, whose logits on random-normal images reach
    |z| > 100) is float32 rounding, not a wrong graph: onnxruntime's probability is no farther from a float64
    PyTorch reference than PyTorch's own float32 one is."""
    import onnxruntime

    session = onnxruntime.InferenceSession(onnx_export["output"], providers=["CPUExecutionProvider"])
    model = load_trained_model(tiny_run["best_checkpoint"])
    reference = copy.deepcopy(model.net).double().eval()
    x = torch.randn(3, 1, 128, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        exact = model.head.probability(reference(x.double()))
        float32 = model.probability(x).double()
    (onnx,) = session.run(["probability"], {"image": x.numpy()})
    onnx_error = (torch.from_numpy(onnx).double() - exact).abs().max()
    torch_error = (float32 - exact).abs().max()
    assert onnx_error <= 2 * torch_error, (float(onnx_error), float(torch_error))


def test_the_readme_onnx_snippet_runs_without_this_project(tiny_run, onnx_export, tmp_path):
    readme = (PROJECT_DIR / "docs" / "inference.md").read_text()  # README links this page for export
    section = readme[readme.index("## Export") :]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "seg" not in re.findall(r"^(?:from|import) (\w+)", snippet, re.M)
    shutil.copy(onnx_export["output"], tmp_path / "best.onnx")
    photo = mosaic(tiny_run["data"], 50, 70)  # sides not multiples of 32
    cv2.imwrite(str(tmp_path / "photo.png"), photo)

    result = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    mask = cv2.imread(str(tmp_path / "mask.png"), cv2.IMREAD_UNCHANGED)
    predict(compose_entry("predict", f"ckpt={tiny_run['best_checkpoint']}", f"input={tmp_path / 'photo.png'}", f"output={tmp_path / 'masks'}"))  # fmt: skip
    expected = cv2.imread(str(tmp_path / "masks" / "photo.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == expected.shape == (50, 70) and set(np.unique(mask)) <= {0, 255}
    agreement = (mask == expected).mean()  # onnxruntime's last-digit differences may flip a pixel at 0.5
    print(f"README snippet vs predict.py: {agreement:.5f} of pixels agree")
    assert agreement >= 0.999


def test_onnx_without_its_packages_is_one_line(tiny_run, monkeypatch):
    real = __import__("importlib").util.find_spec
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    with pytest.raises(UserError, match=r'^format=onnx needs onnxscript, not installed: pip install -e "\.\[onnx\]"'):
        export(compose_entry("export", f"ckpt={tiny_run['best_checkpoint']}"))
    with pytest.raises(UserError, match=r"^format=tflite: unknown; use one of onnx, torchscript$"):
        export(compose_entry("export", f"ckpt={tiny_run['best_checkpoint']}", "format=tflite"))


def mosaic(data: Path, height: int, width: int) -> np.ndarray:
    """A (height, width) grey image made of the 32 px test images side by side: a large image of the task."""
    tiles = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted((data / "test" / "images").glob("*.png"))]
    rows, columns = -(-height // 32), -(-width // 32)
    grid = [np.concatenate([tiles[(7 * r + 3 * c) % len(tiles)] for c in range(columns)], 1) for r in range(rows)]
    return np.ascontiguousarray(np.concatenate(grid, 0)[:height, :width])


@pytest.fixture(scope="module")
def shallow_run(tmp_path_factory) -> dict:
    """A 2-epoch tiny run of a U-Net of depth 3 (stride 8): its context fits in a tile (see the test below)."""
    tmp = tmp_path_factory.mktemp("shallow")
    overrides = ["trainer.max_epochs=2", "head=tanh_mse", "model.encoder_depth=3", "model.decoder_channels=[32,16,16]"]
    summary = train(compose_config([*tiny_overrides(tmp), *overrides]))
    return {**summary, "data": tmp / "data"}


def test_tiled_prediction_agrees_with_the_whole_image(shallow_run, tmp_path):
    """Images larger than a tile, predicted in tiles and whole: the masks agree on >= 99.9% of pixels.

    The default depth-5 U-Net trained on 32 px images (a 1 x 1 bottleneck) uses the whole image as context, so
    no tiling can match it (README "Predict"); the depth-3 one here needs ~48 px, which 192 px tiles with 128 px
    of overlap give every pixel. 130 x 470 is narrower than a tile: its tiles are 136 x 192 px.
    """
    photos = tmp_path / "photos"
    photos.mkdir()
    for height, width in [(200, 300), (130, 470)]:
        cv2.imwrite(str(photos / f"big_{height}x{width}.png"), mosaic(shallow_run["data"], height, width))
    ckpt = shallow_run["best_checkpoint"]
    tiled = predict(compose_entry("predict", f"ckpt={ckpt}", f"input={photos}", f"output={tmp_path / 'tiled'}", "tile=192", "overlap=128"))  # fmt: skip
    whole = predict(compose_entry("predict", f"ckpt={ckpt}", f"input={photos}", f"output={tmp_path / 'whole'}", "tile=null"))  # fmt: skip
    assert (tiled["tiled"], whole["tiled"]) == (2, 0)
    for path in sorted(photos.iterdir()):
        a = cv2.imread(str(tmp_path / "tiled" / path.name), cv2.IMREAD_UNCHANGED)
        b = cv2.imread(str(tmp_path / "whole" / path.name), cv2.IMREAD_UNCHANGED)
        agreement = (a == b).mean()
        print(f"{path.name}: tiled (192 px, 128 overlap) and whole masks agree on {agreement:.5f} of pixels")
        assert a.shape == b.shape and agreement >= 0.999
        assert 0.05 < (b > 0).mean() < 0.95  # a mask with content: agreement on a blank one would prove nothing


def test_a_checkpoint_that_is_not_ours_is_one_line(tmp_path):
    (tmp_path / "x.ckpt").write_bytes(b"garbage")
    with pytest.raises(Exception, match=r"x.ckpt: cannot be read as a checkpoint \(.*\); use a .ckpt a run wrote"):
        load_trained_model(tmp_path / "x.ckpt")


OPERATING_POINT_KEYS = (
    "val_threshold", "test/iou@val_threshold", "test/dice@val_threshold", "test/ap", "temperature",
    "test/ece", "test/brier", "test/ece@temperature", "test/brier@temperature",
)  # fmt: skip


def test_the_run_stores_its_operating_point_and_eval_reuses_it(tiny_run, tmp_path):
    """summary.json's threshold and calibration entries, the same numbers from eval.py on the checkpoint."""
    assert all(isinstance(tiny_run[key], float) for key in OPERATING_POINT_KEYS)
    assert 0 < tiny_run["val_threshold"] < 1 and tiny_run["temperature"] > 0
    assert (Path(tiny_run["run_dir"]) / "reliability.png").stat().st_size > 0
    model = load_trained_model(tiny_run["best_checkpoint"])
    assert model.operating_point == {"val_threshold": tiny_run["val_threshold"], "temperature": tiny_run["temperature"]}

    ckpt = tiny_run["best_checkpoint"]
    picked = evaluate(compose_entry("eval", f"ckpt={ckpt}", "threshold=val", f"output={tmp_path / 'picked.json'}"))
    assert picked["threshold"] == tiny_run["val_threshold"] and picked["threshold_source"].startswith("checkpoint")
    assert abs(picked["test/iou"] - tiny_run["test/iou@val_threshold"]) < 1e-6
    assert abs(picked["test/dice"] - tiny_run["test/dice@val_threshold"]) < 1e-6
    for key in ("test/ap", "test/ece", "test/brier", "test/ece@temperature", "test/brier@temperature"):
        assert abs(picked[key] - tiny_run[key]) < 1e-6, key

    # A threshold changes the decision, and components larger than any image leave nothing.
    low = evaluate(compose_entry("eval", f"ckpt={ckpt}", "threshold=0.02", f"output={tmp_path / 'low.json'}"))
    assert low["test/iou"] != tiny_run["test/iou"] and low["test/ap"] == picked["test/ap"]  # AP: no threshold
    nothing = evaluate(compose_entry("eval", f"ckpt={ckpt}", "min_component=100000", f"output={tmp_path / 'x.json'}"))
    assert nothing["test/iou"] == 0.0


def test_predict_with_tta_and_threshold_writes_the_flip_mean_and_its_decision(tiny_run, tmp_path):
    images = sorted((tiny_run["data"] / "test" / "images").glob("*.png"))[:2]
    ckpt = tiny_run["best_checkpoint"]
    result = predict(compose_entry("predict", f"ckpt={ckpt}", f"input={images[0].parent}", f"output={tmp_path / 'out'}", "probabilities=true", "tta=true", "threshold=val"))  # fmt: skip
    assert result["threshold"] == tiny_run["val_threshold"]
    model = load_trained_model(ckpt)
    for path in images:
        grey = cv2.imread(str(path), cv2.IMREAD_UNCHANGED).astype(np.float32)
        x = torch.from_numpy((grey - 0.5 * 255) / (0.25 * 255))[None, None]
        with torch.no_grad():
            views = [
                model.probability(x.flip(d)).flip(d) if d else model.probability(x)
                for d in ((), (-1,), (-2,), (-2, -1))
            ]
        mean = torch.stack(views).mean(0)[0, 0].numpy()
        written = cv2.imread(str(tmp_path / "out" / f"{path.stem}_prob.png"), cv2.IMREAD_UNCHANGED) / 255
        assert np.abs(written - mean).max() <= 0.5 / 255 + 1e-5
        mask = cv2.imread(str(tmp_path / "out" / path.name), cv2.IMREAD_UNCHANGED) > 0
        assert np.array_equal(mask, mean >= tiny_run["val_threshold"])


def test_evaluate_last_scores_the_final_weights_as_eval_scores_last_ckpt(tmp_path, tiny_run):
    """`evaluate_last=true`: summary.json's `last/...` are the final weights' numbers (those in last.ckpt), not the
    best checkpoint's; eval.py on last.ckpt gives them again."""
    summary = train(compose_config([*tiny_overrides(tmp_path), "trainer.max_epochs=2", "evaluate_last=true"]))
    last_ckpt = Path(summary["run_dir"]) / "checkpoints" / "last.ckpt"
    report = evaluate(compose_entry("eval", f"ckpt={last_ckpt}", f"output={tmp_path / 'last.json'}"))
    for key in ("test/iou", "test/dice", "test/ap", "test/ece", "test/brier"):
        assert abs(report[key] - summary[f"last/{key}"]) < 1e-6, key
    assert {"last/val/iou", "last/test/iou@val_threshold", "last/val_threshold", "last/temperature"} <= set(summary)
    best = evaluate(compose_entry("eval", f"ckpt={summary['best_checkpoint']}", f"output={tmp_path / 'best.json'}"))
    assert abs(best["test/iou"] - summary["test/iou"]) < 1e-6  # the unprefixed entries stay the best checkpoint's
    assert not any(key.startswith("last/") for key in tiny_run)  # off by default
