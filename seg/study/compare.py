"""Reading a head study's runs and saying, with numbers a reviewer accepts, which head won and by how much.

A *job* is one run directory of a Hydra multirun (`.hydra/overrides.yaml`, and `summary.json` when it
finished). Jobs are grouped by what was swept except the seed: the head, and e.g. a noise level or a
learning rate. Within a *context* (everything but head and seed) each head is compared with the baseline
head (sigmoid_bce) seed by seed: the same seed means the same data order, augmentation and noisy labels,
so the paired difference removes that shared luck.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from scipy import stats

METRICS = ("test/iou", "test/dice")
CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 10_000


@dataclass
class Job:
    path: Path
    overrides: dict[str, str]
    summary: dict | None  # None: the job started but wrote no summary.json (failed or still running)

    @property
    def seed(self) -> str:
        return self.overrides.get("seed", str((self.summary or {}).get("seed", "?")))

    @property
    def head(self) -> str:
        return (self.summary or {}).get("head") or self.overrides.get("head", "sigmoid_bce")


@dataclass
class Study:
    jobs: list[Job]
    varying: list[str]  # override keys (other than seed) that differ between jobs: what defines a group
    groups: dict[str, list[Job]] = field(default_factory=dict)  # label -> finished jobs

    def context(self, job: Job) -> str:
        # A key a job did not override is left out: "experiment=compare_heads", not "... data.label_noise.level=".
        return " ".join(f"{k}={job.overrides[k]}" for k in self.varying if k != "head" and k in job.overrides)

    def label(self, job: Job) -> str:
        return " ".join(part for part in (job.head, self.context(job)) if part)


def find_jobs(directories: list[Path]) -> list[Job]:
    jobs = []
    for directory in directories:
        for overrides_file in sorted(directory.glob("**/.hydra/overrides.yaml")):
            job_dir = overrides_file.parent.parent
            pairs = [item.split("=", 1) for item in yaml.safe_load(overrides_file.read_text()) or []]
            overrides = {k.lstrip("+~"): v for k, v in (p for p in pairs if len(p) == 2)}
            summary_file = job_dir / "summary.json"
            summary = json.loads(summary_file.read_text()) if summary_file.exists() else None
            jobs.append(Job(job_dir, overrides, summary))
    return jobs


def build_study(jobs: list[Job]) -> Study:
    keys = sorted({k for job in jobs for k in job.overrides} - {"seed"})
    varying = [k for k in keys if len({job.overrides.get(k) for job in jobs}) > 1]
    if "head" not in varying:
        varying.insert(0, "head")
    study = Study(jobs=jobs, varying=varying)
    for job in jobs:
        if job.summary is not None:
            study.groups.setdefault(study.label(job), []).append(job)
    return study


def failed_jobs(study: Study) -> list[Job]:
    return [job for job in study.jobs if job.summary is None]


def missing_runs(study: Study) -> list[str]:
    """Group/seed pairs that no job covers although other groups ran that seed (e.g. a sweep cut short)."""
    seeds = {job.seed for job in study.jobs}
    covered = defaultdict(set)
    for job in study.jobs:
        covered[study.label(job)].add(job.seed)
    return [f"{label} seed={seed}" for label, have in sorted(covered.items()) for seed in sorted(seeds - have)]


def bootstrap_ci(values: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """95% BCa bootstrap interval of the mean; (nan, nan) under 3 values or with no spread at all."""
    if len(values) < 3 or np.ptp(values) == 0:
        return (math.nan, math.nan)
    result = stats.bootstrap(
        (values,), np.mean, confidence_level=CONFIDENCE, n_resamples=BOOTSTRAP_RESAMPLES, method="BCa", rng=seed
    )
    return (float(result.confidence_interval.low), float(result.confidence_interval.high))


def describe(values: np.ndarray) -> dict:
    low, high = bootstrap_ci(values)
    return {
        "n": int(len(values)),
        "mean": float(np.mean(values)),
        "std": float(np.std(values, ddof=1)) if len(values) > 1 else math.nan,
        "ci_low": low,
        "ci_high": high,
    }


def t_interval(values: np.ndarray) -> tuple[float, float]:
    """95% Student-t interval of the mean: wider than the bootstrap's with few seeds, which undercovers there."""
    if len(values) < 2 or np.ptp(values) == 0:
        return (math.nan, math.nan)
    low, high = stats.t.interval(CONFIDENCE, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    return (float(low), float(high))


def minimal_detectable_difference(differences: np.ndarray, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest true mean paired difference a two-sided paired t-test on these n seeds detects with `power`.

    (t_{1-alpha/2, n-1} + t_{power, n-1}) * sd(differences) / sqrt(n), the usual normal-approximation formula
    with t quantiles; it grows as the seeds disagree and shrinks as 1/sqrt(n).
    """
    n = len(differences)
    if n < 2:
        return math.nan
    df = n - 1
    return float((stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) * np.std(differences, ddof=1) / math.sqrt(n))


def paired_comparison(head_values: dict[str, float], base_values: dict[str, float]) -> dict:
    """head - baseline over the seeds both have: mean, 95% CIs, Wilcoxon and paired-t p, detectable difference."""
    seeds = sorted(set(head_values) & set(base_values))
    d = np.array([head_values[s] - base_values[s] for s in seeds])
    out = {"n": len(seeds), "mean_diff": float(d.mean()) if len(d) else math.nan}
    out["ci_low"], out["ci_high"] = bootstrap_ci(d)
    out["t_ci_low"], out["t_ci_high"] = t_interval(d)
    # Exact signed-rank test. With n seeds the smallest two-sided p it can give is 2 / 2^n (0.0625 for n = 5).
    out["wilcoxon_p"] = float(stats.wilcoxon(d).pvalue) if len(d) >= 1 and np.any(d != 0) else math.nan
    # Paired t-test: unlike the signed-rank test its p is not floored at 2 / 2^n, so it can survive a
    # multiple-comparison correction over many cells (the head atlas) with 6 seeds.
    out["t_p"] = float(stats.ttest_1samp(d, 0.0).pvalue) if len(d) >= 2 and np.ptp(d) > 0 else math.nan
    out["min_possible_p"] = 2 / 2 ** len(d) if len(d) else math.nan
    out["detectable"] = minimal_detectable_difference(d)
    return out


def metric_by_seed(jobs: list[Job], metric: str) -> dict[str, float]:
    return {job.seed: float(job.summary[metric]) for job in jobs if job.summary and metric in job.summary}


def read_curve(job: Job, metric: str) -> dict[int, float]:
    """step -> value of `metric` from the job's CSV log (empty if absent)."""
    path = job.path / "csv" / "metrics.csv"
    if not path.exists():
        return {}
    with open(path) as handle:
        return {int(r["step"]): float(r[metric]) for r in csv.DictReader(handle) if r.get(metric)}


def late_mean(job: Job, metric: str, fraction: float = 0.25) -> float:
    """Mean of the last `fraction` of a logged training curve: the late-training value of a diagnostic."""
    curve = read_curve(job, metric)
    if not curve:
        return math.nan
    values = [curve[s] for s in sorted(curve)]
    return float(np.mean(values[-max(1, int(len(values) * fraction)) :]))


def last_value(job: Job, metric: str) -> float:
    curve = read_curve(job, metric)
    return curve[max(curve)] if curve else math.nan
