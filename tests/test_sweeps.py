"""The sweep plugins for real, on tiny runs: joblib (2 parallel jobs); SLURM by its sbatch script. Optuna: tests/test_tune.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from seg.paths import PROJECT_DIR
from seg.run.resolvers import register_resolvers
from tests.conftest import CONF_DIR, run_cli, tiny_overrides

pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason='pip install -e ".[sweep]"')


def sweep_overrides(tmp_path: Path) -> list[str]:
    tiny = [o for o in tiny_overrides(tmp_path) if not o.startswith("paths.output_dir")]
    return [f"hydra.sweep.dir={tmp_path / 'sweep'}", *tiny, "trainer.max_epochs=1"]


def summaries(sweep: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(sweep.glob("*/summary.json"))]


@pytest.mark.slow  # a real CLI process (imports alone take seconds); the in-process tests cover the logic
def test_joblib_runs_jobs_in_parallel_processes(tmp_path):
    result = run_cli(
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "head=sigmoid_bce,tanh_mse",
        *sweep_overrides(tmp_path),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(s["head"] for s in summaries(tmp_path / "sweep")) == ["sigmoid_bce", "tanh_mse"]
    pids = {json.loads(p.read_text())["pid"] for p in (tmp_path / "sweep").glob("*/run.json")}
    assert len(pids) == 2  # two worker processes, not the launching one in turn


def test_slurm_launcher_asks_for_one_gpu_and_task_per_device(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    import submitit

    fake_srun = tmp_path / "bin" / "srun"  # submitit's SLURM executor insists on finding srun; nothing runs it
    fake_srun.parent.mkdir()
    fake_srun.write_text("#!/bin/sh\nexit 1\n")
    fake_srun.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_srun.parent}:{os.environ['PATH']}")

    register_resolvers()
    overrides = ["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "hydra.launcher.partition=gpu"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            config_name="train", overrides=[*overrides, "hydra.launcher.timeout_min=90"], return_hydra_config=True
        )
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert params["_target_"].endswith("SlurmLauncher")
    assert params["gpus_per_node"] == params["tasks_per_node"] == cfg.trainer.devices == 4
    # The executor the plugin builds (SlurmLauncher.launch), rendered to the sbatch script it would submit.
    executor = submitit.AutoExecutor(cluster="slurm", folder=tmp_path)
    base = {
        "timeout_min",
        "cpus_per_task",
        "gpus_per_node",
        "tasks_per_node",
        "mem_gb",
        "nodes",
        "name",
        "stderr_to_stdout",
    }
    skip = {"_target_", "submitit_folder", "max_num_timeout"}
    executor.update_parameters(**{(k if k in base else f"slurm_{k}"): v for k, v in params.items() if k not in skip})
    script = executor._executor._make_submission_file_text("python train.py", "0")
    for line in ("--gpus-per-node=4", "--ntasks-per-node=4", "--partition=gpu", "--time=90", "--mem=32GB", "--nodes=1"):
        assert f"#SBATCH {line}" in script, script


# ---- a sweep launched again continues -----------------------------------------------------------------------


def files_and_mtimes(directory: Path) -> dict[str, int]:
    return {str(p.relative_to(directory)): p.stat().st_mtime_ns for p in directory.rglob("*") if p.is_file()}


@pytest.mark.slow  # several CLI processes: tens of seconds each
def test_a_finished_sweep_launched_again_skips_its_jobs_and_refuses_a_different_one(tmp_path):
    sweep = tmp_path / "sweep"
    first = run_cli("-m", "seed=0", *sweep_overrides(tmp_path), cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    job = sweep / "0"
    kept = {k: v for k, v in files_and_mtimes(job).items() if not k.startswith(".hydra") and k != "train.log"}
    again = run_cli("-m", "seed=0", *sweep_overrides(tmp_path), cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "finished with this config by an earlier launch of the sweep; skipped" in (job / "train.log").read_text()
    assert {k: v for k, v in files_and_mtimes(job).items() if k in kept} == kept  # nothing trained or rewritten

    other = run_cli("-m", "seed=1", *sweep_overrides(tmp_path), cwd=tmp_path)  # job 0 is now another run
    assert other.returncode != 0
    line = other.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: hydra.sweep.dir job {job}: the config differs from the run's (")
    assert "seed: 0 -> 1" in line and "launch a different sweep into a new hydra.sweep.dir" in line
    assert {k: v for k, v in files_and_mtimes(job).items() if k in kept} == kept


@pytest.mark.slow
def test_a_sweep_killed_half_way_and_launched_again_gives_the_numbers_of_one_that_ran_through(tmp_path):
    """The basic launcher runs the jobs one after the other in one process: kill -9 it during job 1, launch again."""
    tiny = [o for o in sweep_overrides(tmp_path) if not o.startswith(("hydra.sweep.dir", "trainer.max_epochs"))]
    sweep_args = [
        "-m",
        "seed=0,1,2",
        *tiny,
        "trainer.max_epochs=2",
        "callbacks.resumable_checkpoint.every_n_train_steps=2",
    ]
    through = run_cli(*sweep_args, f"hydra.sweep.dir={tmp_path / 'through'}", cwd=tmp_path)
    assert through.returncode == 0, through.stderr[-3000:]

    sweep = tmp_path / "killed"
    command = [sys.executable, str(PROJECT_DIR / "train.py"), *sweep_args, f"hydra.sweep.dir={sweep}"]
    process = subprocess.Popen(command, cwd=tmp_path, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    last, deadline = sweep / "1" / "checkpoints" / "last.ckpt", time.monotonic() + 600
    while process.poll() is None and time.monotonic() < deadline and _saved_step(last) < 4:
        time.sleep(0.05)
    process.kill()
    assert process.wait() == -signal.SIGKILL
    assert (sweep / "0" / "summary.json").exists() and not (sweep / "1" / "summary.json").exists()
    assert not (sweep / "2").exists()
    finished = (sweep / "0" / "summary.json").stat().st_mtime_ns

    again = run_cli(*sweep_args, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (sweep / "0" / "summary.json").stat().st_mtime_ns == finished  # skipped, not run again
    compared = ("val/iou", "val/dice", "test/iou", "test/dice", "global_step", "epochs", "seed")
    for job in ("0", "1", "2"):
        a = json.loads((tmp_path / "through" / job / "summary.json").read_text())
        b = json.loads((sweep / job / "summary.json").read_text())
        assert {k: a[k] for k in compared} == {k: b[k] for k in compared}, job
        # the log too: job 1's rows from before the kill are kept, the steps since logged once (seg/run/loggers.py)
        assert (sweep / job / "csv" / "metrics.csv").read_text() == (
            tmp_path / "through" / job / "csv" / "metrics.csv"
        ).read_text(), job


def _saved_step(checkpoint: Path) -> int:
    try:
        return torch.load(checkpoint, map_location="cpu", weights_only=True)["global_step"]
    except Exception:  # not there yet, or being written
        return -1


def test_a_finished_job_without_last_ckpt_is_refused_for_another_config_not_trained_over(tiny_cfg, tmp_path):
    """The atlas's lean jobs keep no last.ckpt: a sweep with other options launched into their directory is
    refused in one line, instead of training over (and replacing) the finished job's results."""
    from seg.errors import UserError
    from seg.run.resume import REPORTED, resolved, sweep_job

    job = tmp_path / "sweep" / "0"
    job.mkdir(parents=True)
    OmegaConf.save(resolved(tiny_cfg(f"paths.output_dir={job}", "seed=0")), job / "config.yaml")
    (job / "summary.json").write_text(json.dumps({key: 0.5 for key in REPORTED}))
    with pytest.raises(UserError) as refused:
        sweep_job(tiny_cfg(f"paths.output_dir={job}", "seed=1"))
    assert str(refused.value).startswith(f"hydra.sweep.dir job {job}: the config differs from the run's (")
    assert "seed: 0 -> 1" in str(refused.value) and "into a new hydra.sweep.dir" in str(refused.value)
    assert sweep_job(tiny_cfg(f"paths.output_dir={job}", "seed=0")).finished == {key: 0.5 for key in REPORTED}
