"""scripts/bench.py end to end on tiny data: the table, then one JSON line with the ratios."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from seg.paths import PROJECT_DIR


def test_bench_prints_the_ratios_as_its_last_line(tmp_path):
    tiny = [f"data.root={tmp_path / 'data'}", "data.source.counts={train: 64, val: 8, test: 8}", "data.source.size=32"]
    result = subprocess.run(
        [
            sys.executable,
            str(PROJECT_DIR / "scripts" / "bench.py"),
            "--steps",
            "3",
            "--warmup",
            "1",
            "--repeats",
            "2",
            *tiny,
        ],
        env={**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
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
