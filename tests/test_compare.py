"""compare.py on fabricated run folders with known numbers."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import yaml
from scipy import stats

from seg.paths import PROJECT_DIR
from seg.study.compare import build_study, find_jobs, minimal_detectable_difference, paired_comparison
from seg.study.report import comparison_rows, copy_reliability_diagrams, render_markdown, summary_rows, write_curves

BCE = [0.80, 0.82, 0.81, 0.83, 0.79]
TANH = [0.81, 0.84, 0.80, 0.85, 0.80]  # differences: +0.01 +0.02 -0.01 +0.02 +0.01


def make_job(root, number, head, seed, iou=None, extra=()):
    job = root / str(number)
    (job / ".hydra").mkdir(parents=True)
    overrides = [f"head={head}", f"seed={seed}", "experiment=compare_heads", *extra]
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if iou is None:
        return  # a job that died before writing its summary
    summary = {"head": head, "seed": seed, "test/iou": iou, "test/dice": 2 * iou / (1 + iou), "val/iou": iou}
    (job / "summary.json").write_text(json.dumps(summary))
    (job / "csv").mkdir()
    rows = ["epoch,step,val/iou,train/stuck_of_wrong"] + [
        f"{e},{10 * (e + 1)},{iou * (e + 1) / 3},{0.1 * e}" for e in range(3)
    ]
    (job / "csv" / "metrics.csv").write_text("\n".join(rows) + "\n")


@pytest.fixture
def sweep(tmp_path):
    root = tmp_path / "sweep"
    number = 0
    for head, values in (("sigmoid_bce", BCE), ("tanh_mse", TANH)):
        for seed, iou in enumerate(values):
            make_job(root, number, head, seed, iou)
            number += 1
    make_job(root, number, "tanh_mse", 5)  # failed: no summary.json
    make_job(root, number + 1, "sigmoid_bce", 5, 0.8)
    make_job(root, number + 2, "sigmoid_bce", 6, 0.8)  # no tanh_mse job at all for seed 6: missing
    return root


def test_per_head_statistics(sweep):
    rows = {r["group"]: r for r in summary_rows(build_study(find_jobs([sweep])))}
    bce = rows["sigmoid_bce"]["test/iou"]
    assert bce["n"] == 7 and bce["mean"] == pytest.approx(np.mean(BCE + [0.8, 0.8]))
    assert bce["std"] == pytest.approx(np.std(BCE + [0.8, 0.8], ddof=1))
    tanh = rows["tanh_mse"]["test/iou"]
    expected = stats.bootstrap((np.array(TANH),), np.mean, n_resamples=10_000, method="BCa", rng=0).confidence_interval
    assert (tanh["ci_low"], tanh["ci_high"]) == pytest.approx((expected.low, expected.high))
    assert tanh["ci_low"] < np.mean(TANH) < tanh["ci_high"]


def test_paired_difference_against_hand_and_scipy_values(sweep):
    row = comparison_rows(build_study(find_jobs([sweep])), "sigmoid_bce")[0]
    c = row["test/iou"]
    d = np.array(TANH) - np.array(BCE)
    assert c["n"] == 5  # seeds 5 and 6 have no tanh_mse result, so they are not paired
    assert c["mean_diff"] == pytest.approx(0.01)
    assert c["wilcoxon_p"] == pytest.approx(stats.wilcoxon(d).pvalue)
    assert c["wilcoxon_p"] >= 0.0625 == c["min_possible_p"]  # 5 seeds: no signed-rank p below 2/2^5
    sd = np.std(d, ddof=1)
    half = stats.t.ppf(0.975, 4) * sd / math.sqrt(5)  # the t interval by hand
    assert (c["t_ci_low"], c["t_ci_high"]) == pytest.approx((0.01 - half, 0.01 + half))
    assert c["detectable"] == pytest.approx((stats.t.ppf(0.975, 4) + stats.t.ppf(0.8, 4)) * sd / math.sqrt(5))


def test_detectable_difference_shrinks_with_more_seeds():
    rng = np.random.default_rng(0)
    d = rng.normal(0, 0.01, 40)
    assert minimal_detectable_difference(d[:5]) > minimal_detectable_difference(d)


def test_identical_heads_give_zero_difference_and_no_p():
    c = paired_comparison({"0": 0.5, "1": 0.6, "2": 0.7}, {"0": 0.5, "1": 0.6, "2": 0.7})
    assert c["mean_diff"] == 0 and math.isnan(c["wilcoxon_p"])


def test_report_lists_failed_and_missing_jobs_and_draws_curves(sweep, tmp_path):
    study = build_study(find_jobs([sweep]))
    curves = tmp_path / "curves.png"
    assert write_curves(study, curves) and curves.stat().st_size > 1000
    report = render_markdown(study, "sigmoid_bce", [sweep], curves)
    assert f"failed or unfinished (no summary.json): `{sweep / '10'}` (tanh_mse seed=5)" in report
    assert "missing: tanh_mse seed=6" in report
    assert "| tanh_mse | test/iou | 5 | +0.0100 |" in report and "t CI" in report
    assert "cannot reach p < 0.05" in report
    assert "stuck of wrong" in report  # diagnostics read from the CSV logs


def test_groups_follow_swept_keys_and_pair_within_a_context(tmp_path):
    root = tmp_path / "noise"
    n = 0
    for level in ("0.0", "0.5"):
        for head, base in (("sigmoid_bce", 0.8), ("tanh_mse", 0.7)):
            for seed in range(3):
                make_job(
                    root, n, head, seed, base - float(level) / 10 + seed / 100, [f"data.label_noise.level={level}"]
                )
                n += 1
    rows = comparison_rows(build_study(find_jobs([root])), "sigmoid_bce")
    assert [r["group"] for r in rows] == ["tanh_mse data.label_noise.level=0.0", "tanh_mse data.label_noise.level=0.5"]
    assert all(r["test/iou"]["mean_diff"] == pytest.approx(-0.1) for r in rows)


def test_cli_writes_report_and_refuses_a_wrong_folder(sweep, tmp_path):
    script = str(PROJECT_DIR / "scripts" / "compare.py")
    ok = subprocess.run([sys.executable, script, str(sweep)], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert (sweep / "report.md").exists() and (sweep / "curves.png").exists()
    assert "tanh_mse" in ok.stdout and "1 failed or unfinished and 1 missing" in ok.stdout
    bad = subprocess.run([sys.executable, script, str(tmp_path / "nope")], capture_output=True, text=True, timeout=120)
    assert (
        bad.returncode == 2
        and bad.stderr.strip()
        == f"error: {tmp_path / 'nope'}: not a folder; pass the multirun folder of a sweep (e.g. multirun/compare_heads/<time>)"
    )


def test_report_gives_the_operating_point_and_whether_a_gap_survives_the_tuned_threshold(tmp_path):
    """BCE wins at 0.5 on every seed; at each run's own val threshold tanh_mse ties: the gap does not survive."""
    root, number = tmp_path / "sweep", 0
    worse = [v - d for v, d in zip(BCE, (0.02, 0.03, 0.02, 0.025, 0.015), strict=True)]
    level = [v + d for v, d in zip(BCE, (0.01, -0.01, 0.005, -0.005, 0.0), strict=True)]
    for head, plain, tuned in (("sigmoid_bce", BCE, BCE), ("tanh_mse", worse, level)):
        for seed, (iou, iou_tuned) in enumerate(zip(plain, tuned, strict=True)):
            make_job(root, number, head, seed, iou)
            job = root / str(number)
            summary = json.loads((job / "summary.json").read_text())
            summary |= {"test/iou@val_threshold": iou_tuned, "val_threshold": 0.4, "test/ap": 0.9, "temperature": 1.5}
            (job / "summary.json").write_text(json.dumps(summary))
            (job / "reliability.png").write_bytes(b"png of " + head.encode())
            number += 1
    study = build_study(find_jobs([root]))
    out = tmp_path / "report"
    out.mkdir()
    copies = copy_reliability_diagrams(study, out)
    report = render_markdown(study, "sigmoid_bce", [root], None, copies)
    assert "## Operating point and calibration" in report
    row = next(line for line in report.splitlines() if line.startswith("| tanh_mse | -0.0220 |"))
    assert "| +0.0000 |" in row and row.endswith("| not resolved at the tuned thresholds |"), row
    assert "| sigmoid_bce | 0.8100 [" in report  # the tuned IoU's mean over the five seeds
    assert [p.name for p in copies] == ["reliability_sigmoid_bce.png", "reliability_tanh_mse.png"]
    assert (out / "reliability_tanh_mse.png").read_bytes() == b"png of tanh_mse"
    assert "![reliability_tanh_mse](reliability_tanh_mse.png)" in report


def test_report_of_runs_without_operating_point_fields_has_no_such_section(sweep):
    report = render_markdown(build_study(find_jobs([sweep])), "sigmoid_bce", [sweep], None)
    assert "Operating point" not in report
