"""The sweep plugins for real, on tiny runs: joblib (2 parallel jobs); SLURM by its sbatch script. Optuna: tests/test_tune.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from seg.run.resolvers import register_resolvers
from tests.conftest import CONF_DIR, run_cli, tiny_overrides

pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason='pip install -e ".[sweep]"')


def sweep_overrides(tmp_path: Path) -> list[str]:
    tiny = [o for o in tiny_overrides(tmp_path) if not o.startswith("paths.output_dir")]
    return [f"hydra.sweep.dir={tmp_path / 'sweep'}", *tiny, "trainer.max_epochs=1"]


def summaries(sweep: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(sweep.glob("*/summary.json"))]


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
