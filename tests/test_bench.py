"""scripts/bench.py on tiny data: the table, then one JSON line with the ratios; the GPU suite's CPU paths."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli


@pytest.mark.slow  # several CLI processes: tens of seconds each
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


@pytest.mark.slow  # several CLI processes: tens of seconds each
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
    assert figures["bare_seconds"] > 0 and figures["project_seconds"] > 0 and figures["minimal_seconds"] > 0
    assert figures["ratio"] == pytest.approx(figures["bare_seconds"] / figures["project_seconds"], rel=1e-3)
    assert figures["minimal_ratio"] == pytest.approx(figures["minimal_seconds"] / figures["project_seconds"], rel=1e-3)
    assert len(figures["bare_seconds_each"]) == len(figures["project_seconds_each"]) == len(figures["ratio_each"]) == 2
    assert len(figures["minimal_seconds_each"]) == len(figures["minimal_ratio_each"]) == 2
    assert figures["steps"] == figures["bare_steps"] == figures["minimal_steps"] == 2 * 4  # 64 images, batch 16
    assert 0 <= figures["minimal_test_iou"] <= 1  # its own draws: close to, not equal to, the project's
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


@pytest.mark.slow  # a real CLI process (imports alone take seconds)
def test_the_gpu_suite_on_a_cpu_only_machine_says_so_in_one_line():
    result = run_cli(
        "--suite", "gpu", script="scripts/bench.py", timeout=300, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES=""
    )
    assert result.returncode == 3, result.stderr[-3000:]  # documented: nothing measured
    assert result.stdout.strip().splitlines() == [
        "no CUDA device here: --suite gpu measures a GPU (add --dry-run to check the command on this CPU)"
    ]


@pytest.mark.slow
def test_the_gpu_suite_dry_run_runs_every_measurement_on_the_cpu(tmp_path):
    out = tmp_path / "suite"
    result = run_cli(
        "--suite", "gpu", "--dry-run", "--out", str(out), f"data.root={tmp_path / 'data'}",
        script="scripts/bench.py", timeout=1800, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "bench_gpu.json").read_text())
    assert report["dry_run"] is True
    groups = {row["group"] for row in report["rows"]}
    assert groups == {"step", "limit", "bare 64 px", "end to end", "loader", "ddp"}
    failed = [row for row in report["rows"] if str(row["value"]).startswith("failed")]
    assert not failed, failed
    table = (out / "bench_gpu.md").read_text()
    assert "| limit | 32 px, eager |" in table and "dry run" in table
