"""scripts/bench.py end to end on tiny data: the table, then one JSON line with the ratios."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli


def test_bench_prints_the_ratios_as_its_last_line(tmp_path):
    tiny = [f"data.root={tmp_path / 'data'}", "data.source.counts={train: 64, val: 8, test: 8}", "data.source.size=32"]
    result = run_cli(
        "--steps", "3", "--warmup", "1", "--repeats", "2", *tiny,
        script="scripts/bench.py", timeout=300, OMP_NUM_THREADS="1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    figures = json.loads(lines[-1])
    for key in ("bare_steps_per_s", "project_steps_per_s", "loader_batches_per_s"):
        assert figures[key] > 0
    assert figures["overhead_ratio"] == pytest.approx(
        figures["project_steps_per_s"] / figures["bare_steps_per_s"], abs=2e-3
    )
    assert figures["loader_ratio"] == pytest.approx(
        figures["loader_batches_per_s"] / figures["project_steps_per_s"], rel=1e-3
    )
    assert any(line.startswith("project") for line in lines[:-1])  # the table


def test_end_to_end_mode_times_whole_runs_and_says_where_the_time_goes(tmp_path):
    """Both sides train the same steps to the same weights; the project side is train(): it writes its files."""
    tiny = [f"data.root={tmp_path / 'data'}", "data.source.counts={train: 64, val: 8, test: 8}", "data.source.size=32"]
    out = tmp_path / "runs"
    result = run_cli(
        "--end-to-end", "--epochs", "2", "--repeats", "2", "--warmup", "1", "--profile", "--out", str(out), *tiny,
        script="scripts/bench.py", timeout=600, OMP_NUM_THREADS="1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["bare_seconds"] > 0 and figures["project_seconds"] > 0
    assert figures["ratio"] == pytest.approx(figures["bare_seconds"] / figures["project_seconds"], rel=1e-3)
    assert len(figures["bare_seconds_each"]) == len(figures["project_seconds_each"]) == len(figures["ratio_each"]) == 2
    assert figures["steps"] == figures["bare_steps"] == 2 * 4  # 64 images in batches of 16, 2 epochs
    # Same seed, network, schedule and batches: the bare loop reaches exactly the project's numbers.
    assert figures["bare_val_iou"] == figures["project_val_iou"]
    assert figures["bare_test_iou"] == figures["project_test_iou"]

    for run in ("project0", "project1"):  # what train() writes
        run_dir = out / run
        assert {p.name for p in (run_dir / "checkpoints").iterdir()} == {"best.ckpt", "last.ckpt"}
        assert list((run_dir / "images").glob("epoch_*.png")) and (run_dir / "curves.png").exists()
        assert json.loads((run_dir / "summary.json").read_text())["global_step"] == 8

    profile = figures["profile"]
    assert profile["callback ModelCheckpoint save_checkpoint"]["project"] > 0  # best.ckpt, written by ModelCheckpoint
    assert profile["callback PredictionImages"]["project"] > 0
    parts = [row for row in profile if row not in ("total",) and not row.startswith("of which")]
    for side in ("project", "bare"):  # the rows add up to the whole run
        assert sum(profile[row][side] for row in parts) == pytest.approx(profile["total"][side], rel=0.01, abs=0.02)
