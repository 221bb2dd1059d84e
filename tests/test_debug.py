"""The debug group: each mode on the tiny config, where it writes, and the CLI's start-up config tree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from seg.run.train import train
from tests.conftest import CONF_DIR, logged_rows, run_cli, tiny_overrides

DEBUG_MODES = sorted(p.stem for p in (CONF_DIR / "debug").glob("*.yaml"))


@pytest.mark.parametrize("mode", DEBUG_MODES)
def test_debug_runs_have_their_own_folders(mode):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"debug={mode}"], return_hydra_config=True)
    assert cfg.hydra.run.dir.startswith("outputs/debug/")
    assert cfg.hydra.sweep.dir.startswith("multirun/debug/")


def test_fdr_runs_one_batch_and_still_reports(tiny_cfg):
    cfg = tiny_cfg("debug=fdr")
    summary = train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    assert summary["global_step"] == 1
    assert summary["best_checkpoint"] is None  # fast_dev_run saves no best checkpoint: the final weights are scored
    assert 0.0 <= summary["val/iou"] <= 1.0 and 0.0 <= summary["test/iou"] <= 1.0
    assert json.loads((run_dir / "summary.json").read_text()) == summary
    assert not (run_dir / "csv" / "metrics.csv").exists()  # Lightning swaps the loggers for a dummy
    assert (run_dir / "images" / "epoch_000.png").exists()  # but the callbacks ran
    assert (run_dir / "curves.png").exists()


def test_limit_runs_a_few_batches_per_epoch(tiny_cfg):
    cfg = tiny_cfg("debug=limit", "data.batch_size=4", "trainer.max_epochs=1")  # 8 batches an epoch unlimited
    summary = train(cfg)
    assert cfg.trainer.limit_train_batches == 4
    assert summary["global_step"] == 4 * cfg.trainer.max_epochs
    rows = logged_rows(Path(cfg.paths.output_dir))
    validations = [row for row in rows if row["val/iou"]]  # one per epoch, then the final validate()
    assert len(validations) == cfg.trainer.max_epochs + 1


def test_overfit_repeats_the_same_batches_without_augmentation(tiny_cfg):
    cfg = tiny_cfg("debug=overfit", "trainer.max_epochs=2")
    assert "augment" not in cfg  # augment=null: the batches are identical every epoch
    summary = train(cfg)
    assert summary["global_step"] == 2 * cfg.trainer.overfit_batches
    assert 0.0 <= summary["train/iou"] <= 1.0 and summary["train/dice"] >= summary["train/iou"]


@pytest.mark.slow
def test_overfit_learns_its_batches(tiny_cfg):
    summary = train(tiny_cfg("debug=overfit", "trainer.max_epochs=150", "trainer.overfit_batches=1"))
    assert summary["train/iou"] > 0.9, summary


def test_profiler_report_lands_in_the_run_dir(tiny_cfg):
    cfg = tiny_cfg("debug=profiler", "trainer.max_epochs=1")
    train(cfg)
    report = (Path(cfg.paths.output_dir) / "fit-profiler.txt").read_text()
    assert "run_training_batch" in report and "Total time (s)" in report


@pytest.mark.slow  # a real CLI process (imports alone take seconds); the in-process tests cover the logic
def test_cli_debug_run_goes_to_outputs_debug_with_config_tree(tmp_path):
    overrides = [o for o in tiny_overrides(tmp_path) if not o.startswith("paths.output_dir")]
    result = run_cli("debug=fdr", "head=tanh_mse", "tags=[baseline,tanh]", *overrides, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "outputs" / "debug").glob("*/*")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["tags"] == ["baseline", "tanh"] and summary["head"] == "tanh_mse"
    tree = (run_dir / "config_tree.log").read_text()
    assert "overrides: debug=fdr head=tanh_mse tags=[baseline,tanh]" in tree
    for choice in ("head: tanh_mse", "debug: fdr", "logger: default", "augment: device_flips"):
        assert choice in tree
    assert "overrides: debug=fdr" in result.stdout  # printed at start-up too
