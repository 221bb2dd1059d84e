"""DDP from the CLI on the CPU (gloo, 2 processes): one writer, one directory, and exact evaluation.

Lightning re-runs train.py for rank 1, so these run the CLI in a subprocess. The val and test splits hold 15
images with eval batches of 4: a padding DistributedSampler would give rank 1 a second copy of image 0, and the
2-process IoU would differ from the 1-process one.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from seg.data.sampler import evaluation_sampler
from seg.errors import UserError
from seg.run.resolvers import register_resolvers
from seg.run.train import build, refuse_ddp_in_multirun
from tests.conftest import CONF_DIR, compose_config, tiny_overrides
from tests.conftest import run_cli as run_train

SPLIT = 15  # odd: not divisible by 2 processes x 4 images


def ddp_overrides(tmp: Path) -> list[str]:
    """The tiny run (its own output dir left to each test), with val/test splits that 2 x 4 does not divide, 2 epochs."""
    return [
        *tiny_overrides(tmp)[1:],
        f"data.source.counts={{train: 32, val: {SPLIT}, test: {SPLIT}}}",
        "data.eval_batch_size=4",
        "trainer.max_epochs=2",
    ]


def without_callbacks(overrides: list[str]) -> list[str]:
    """The overrides less those that edit callbacks (to combine with `~callbacks`)."""
    return [o for o in overrides if not o.startswith("~callbacks.")]


@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_evaluation_shards_cover_the_split_once(world_size):
    split = range(SPLIT)
    shards = [
        list(evaluation_sampler(split, SimpleNamespace(world_size=world_size, global_rank=r)))
        for r in range(world_size)
    ]
    assert sorted(i for shard in shards for i in shard) == list(split)
    assert evaluation_sampler(split, SimpleNamespace(world_size=1, global_rank=0)) is None
    assert evaluation_sampler(split, None) is None


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_train(*args, cwd=cwd, timeout=300, OMP_NUM_THREADS="1")


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    tmp = tmp_path_factory.mktemp("ddp")
    result = run_cli(
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.precision=32-true",
        f"hydra.run.dir={tmp / 'run'}",
        *ddp_overrides(tmp),
        cwd=tmp,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp, result


def test_ddp_run_writes_once_into_one_directory(ddp_run):
    tmp, result = ddp_run
    run_dir = tmp / "run"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["run_dir"] == str(run_dir) and summary["global_step"] == 2 * 2  # 32 images / (2 ranks x 8)
    assert result.stdout.count("run directory:") == 1  # rank 1 prints no summary table
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert sorted(p.name for p in run_dir.glob("*.log")) == ["config_tree.log", "train.log"]
    assert len(list((run_dir / "csv").glob("metrics*.csv"))) == 1
    assert [p.name for p in tmp.iterdir() if p.is_dir()] == sorted(["data", "run"])  # no second run directory


@pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`")  # the callbacks do not matter here
def test_two_process_evaluation_equals_one_process(ddp_run, tmp_path):
    """The best checkpoint, scored by the 2-process run's trainer.validate/test, scored again in one process."""
    tmp, _ = ddp_run
    two = json.loads((tmp / "run" / "summary.json").read_text())
    assert two["best_checkpoint"]
    cfg = compose_config(
        [f"paths.output_dir={tmp_path / 'one'}", *without_callbacks(ddp_overrides(tmp)), "~logger", "~callbacks"]
    )
    module, datamodule, trainer = build(cfg)
    val = trainer.validate(module, datamodule=datamodule, ckpt_path=two["best_checkpoint"], verbose=False)[0]
    test = trainer.test(module, datamodule=datamodule, ckpt_path=two["best_checkpoint"], verbose=False)[0]
    one = {**val, **test}
    for key in ("val/iou", "val/dice", "test/iou", "test/dice"):
        assert abs(one[key] - two[key]) < 1e-6, (key, one[key], two[key])


@pytest.mark.slow  # a real CLI process (imports alone take seconds); the in-process tests cover the logic
def test_ddp_inside_a_multirun_is_refused_in_one_line(tmp_path):
    result = run_cli(
        "-m",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "seed=0,1",
        *ddp_overrides(tmp_path),
        cwd=tmp_path,
    )
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: trainer.devices=2 with strategy DDPStrategy inside a -m multirun"), last
    assert "hydra/launcher=slurm" in last and "Traceback" not in result.stderr
    assert not list((tmp_path / "sweep").glob("*/checkpoints"))  # refused before training


SLURM_TASK = {  # what srun sets in each task of a 2-task job (submitit's launcher starts jobs like this)
    "SLURM_NTASKS": "2",
    "SLURM_NTASKS_PER_NODE": "2",
    "SLURM_PROCID": "0",
    "SLURM_LOCALID": "0",
    "SLURM_NODEID": "0",
    "SLURM_JOB_ID": "1",
    "SLURM_JOB_NAME": "train",
    "SLURM_NODELIST": "node1",
}


@pytest.mark.parametrize("slurm", [False, True])
def test_ddp_in_a_multirun_is_allowed_only_where_slurm_starts_the_ranks(tmp_path, monkeypatch, slurm):
    for key in [k for k in os.environ if k.startswith("SLURM_")]:
        monkeypatch.delenv(key)
    if slurm:
        for key, value in SLURM_TASK.items():
            monkeypatch.setenv(key, value)
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["trainer=ddp", "trainer.accelerator=cpu"], return_hydra_config=True)
    cfg.hydra.mode = RunMode.MULTIRUN
    HydraConfig.instance().set_config(cfg)
    try:
        trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False, default_root_dir=tmp_path)
        environment = type(trainer.strategy.cluster_environment).__name__
        assert environment == ("SLURMEnvironment" if slurm else "LightningEnvironment")
        if slurm:
            refuse_ddp_in_multirun(trainer)  # srun started the ranks: nothing is re-run
        else:
            with pytest.raises(UserError, match="inside a -m multirun"):
                refuse_ddp_in_multirun(trainer)
    finally:
        HydraConfig.instance().cfg = None
