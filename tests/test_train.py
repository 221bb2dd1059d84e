"""End to end: configs composed as the CLI does, tiny fits of each head, the CLI's errors and multirun."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import pytest

from seg.errors import UserError
from seg.run.train import optimized_value, train
from tests.conftest import head_names, run_cli, tiny_overrides


def epoch_losses(run_dir: Path) -> list[float]:
    """Mean logged train/loss of each epoch, from the CSV logger's file."""
    by_epoch: dict[int, list[float]] = defaultdict(list)
    with open(run_dir / "csv" / "metrics.csv") as handle:
        for row in csv.DictReader(handle):
            if row.get("train/loss"):
                by_epoch[int(row["epoch"])].append(float(row["train/loss"]))
    return [sum(v) / len(v) for _, v in sorted(by_epoch.items())]


STUDIED = ("sigmoid_bce", "tanh_mse")  # the question's two heads train in the default suite, the others under -m slow


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=() if n in STUDIED else pytest.mark.slow) for n in head_names()]
)
def test_tiny_fit_writes_summary_and_learns(tiny_cfg, name):
    cfg = tiny_cfg(f"head={name}", "trainer.max_epochs=4", "optimizer.lr=1e-2")
    summary = train(cfg)
    run_dir = Path(cfg.paths.output_dir)

    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert on_disk == summary
    assert summary["head"] == name and summary["seed"] == 0
    for key in ("val/iou", "val/dice", "test/iou", "test/dice"):
        assert 0.0 <= summary[key] <= 1.0
    assert summary["test/dice"] >= summary["test/iou"]  # Dice = 2 IoU / (1 + IoU) >= IoU on the same pixels
    assert Path(summary["best_checkpoint"]) == run_dir / "checkpoints" / "best.ckpt"
    assert (run_dir / "checkpoints" / "last.ckpt").exists()
    assert (run_dir / "config.yaml").exists()
    assert summary["train_seconds"] > 0 and summary["global_step"] == 4 * 4

    losses = epoch_losses(run_dir)
    assert len(losses) == 4 and losses[-1] < 0.8 * losses[0], losses


def test_same_seed_same_numbers(tiny_cfg, tmp_path):
    first = train(tiny_cfg("trainer.max_epochs=1"))
    again = train(tiny_cfg("trainer.max_epochs=1", f"paths.output_dir={tmp_path / 'again'}"))
    for key in ("val/iou", "test/iou", "test/dice"):
        assert first[key] == again[key]


def test_max_steps_shorter_than_an_epoch_still_reports(tiny_cfg):
    summary = train(tiny_cfg("trainer.max_steps=2"))
    assert summary["best_checkpoint"] is None  # no validation ran, so no best: the final weights were evaluated
    assert summary["global_step"] == 2 and 0.0 <= summary["test/iou"] <= 1.0


def test_optimized_metric_must_exist():
    summary = {"val/iou": 0.5, "head": "tanh_mse"}
    assert optimized_value(summary, "val/iou") == 0.5
    with pytest.raises(UserError, match="optimized_metric='val/iuo' is not a metric"):
        optimized_value(summary, "val/iuo")


@pytest.mark.slow  # a real CLI process (imports alone take seconds); the in-process tests cover the logic
def test_unknown_head_lists_the_choices(tmp_path):
    result = run_cli("head=tanh", cwd=tmp_path)
    assert result.returncode != 0
    assert "error: head=tanh: no such option in conf/head/" in result.stderr
    assert "sigmoid_bce" in result.stderr and "tanh_mse" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow  # a real CLI process (imports alone take seconds); the in-process tests cover the logic
def test_misspelled_key_is_named(tmp_path):
    result = run_cli("trainer.max_epoch=3", cwd=tmp_path)
    assert result.returncode != 0
    assert "max_epoch" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow  # a real CLI process (imports alone take seconds); the in-process tests cover the logic
def test_bad_data_root_is_one_line(tmp_path):
    result = run_cli(f"hydra.run.dir={tmp_path / 'run'}", f"data.root={tmp_path / 'nowhere'}", "data.source=null")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {tmp_path / 'nowhere'}: data.root not found")
    assert "Traceback" not in result.stderr


@pytest.mark.slow  # a real CLI process (imports alone take seconds); the in-process tests cover the logic
def test_unknown_trainer_argument_is_one_line(tmp_path):
    result = run_cli(f"hydra.run.dir={tmp_path / 'run'}", "+trainer.max_epoks=3", *tiny_overrides(tmp_path)[1:])
    assert result.returncode == 2
    assert "max_epoks" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow  # a real CLI process (imports alone take seconds); the in-process tests cover the logic
def test_multirun_gives_each_job_its_own_directory(tmp_path):
    overrides = [o for o in tiny_overrides(tmp_path) if not o.startswith("paths.output_dir")]
    result = run_cli(
        "-m",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        "head=sigmoid_bce,tanh_mse",
        "seed=0,1",
        *overrides,
        "trainer.max_epochs=1",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = [json.loads(p.read_text()) for p in sorted((tmp_path / "sweep").glob("*/summary.json"))]
    assert sorted((s["head"], s["seed"]) for s in summaries) == [
        ("sigmoid_bce", 0),
        ("sigmoid_bce", 1),
        ("tanh_mse", 0),
        ("tanh_mse", 1),
    ]
    assert len({s["run_dir"] for s in summaries}) == 4
