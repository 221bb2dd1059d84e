"""The logger group: each offline logger records the resolved config (tags included) and the same metric names;
a missing optional package is one line naming the extra, before training starts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from seg.errors import UserError
from seg.run.loggers import build_loggers, missing_package_hint
from seg.run.train import train
from tests.conftest import logged_rows

# Every metric the module logs during a fit and the evaluation after it.
METRICS = {"train/loss", "train/iou", "train/dice", "val/loss", "val/iou", "val/dice", "test/iou", "test/dice"}


def csv_metric_names(run_dir: Path) -> set[str]:
    return set(logged_rows(run_dir)[0]) - {"epoch", "step"}


def test_default_loggers_record_config_tags_metrics_and_images(tiny_cfg):
    cfg = tiny_cfg("trainer.max_epochs=2", "tags=[baseline,tanh]")
    summary = train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    assert summary["tags"] == ["baseline", "tanh"]

    for name in ("csv", "tensorboard"):
        hparams = yaml.safe_load((run_dir / name / "hparams.yaml").read_text())
        assert hparams["tags"] == ["baseline", "tanh"]
        assert hparams["head"]["_target_"] == "seg.heads.SigmoidBCE"
        assert hparams["trainer"]["max_epochs"] == 2
    assert csv_metric_names(run_dir) >= METRICS

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert METRICS - {"test/iou", "test/dice"} <= set(events.Tags()["scalars"])  # test/* go to a later events file
    images = events.Images("val/predictions")
    assert [image.step for image in images] == [4, 8]  # epoch 0's and the last validation's, at their global steps


def test_logger_options_combine_as_a_list(tiny_cfg):
    cfg = tiny_cfg("logger=[csv,tensorboard]")
    assert set(cfg.logger) == {"csv", "tensorboard"}
    assert OmegaConf.to_container(tiny_cfg("logger=default").logger) == OmegaConf.to_container(cfg.logger)
    assert set(tiny_cfg("logger=csv").logger) == {"csv"}


def test_mlflow_logs_config_and_metrics_to_a_local_store(tiny_cfg):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    cfg = tiny_cfg("logger=many", "trainer.max_epochs=1", "tags=[baseline]")
    train(cfg)
    client = MlflowClient(cfg.logger.mlflow.tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("seg").experiment_id])
    assert run.data.params["tags"] == "['baseline']"
    assert run.data.params["head/_target_"] == "seg.heads.SigmoidBCE"
    assert set(run.data.metrics) - {"epoch"} == csv_metric_names(Path(cfg.paths.output_dir))  # CSV: a column
    assert set(run.data.metrics) >= METRICS
    assert Path(cfg.paths.output_dir, "mlflow.db").exists()


def test_wandb_runs_offline_in_the_run_dir(tiny_cfg, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    for variable in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(variable, str(tmp_path / "wandb-home"))  # nothing written to the user's home
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    cfg = tiny_cfg("logger=wandb", "trainer.max_epochs=1", "tags=[baseline]")
    train(cfg)
    import wandb

    assert wandb.run is None  # finished: the next run of this process (a multirun's next job) gets its own
    (record,) = Path(cfg.paths.output_dir, "wandb").glob("offline-run-*/run-*.wandb")
    data = record.read_bytes()  # W&B's protobuf records hold the names as plain bytes
    for name in (*METRICS, "optimized_metric", "baseline"):
        assert name.encode() in data, name


@pytest.mark.parametrize("package", ["mlflow", "wandb"])
def test_missing_extra_is_one_line_before_training(tiny_cfg, monkeypatch, package):
    monkeypatch.setitem(sys.modules, package, None)  # `import mlflow` now fails as if it were not installed
    cfg = tiny_cfg(f"logger={package}")
    with pytest.raises(UserError) as error:
        train(cfg)
    assert str(error.value) == (
        f"logger.{package} needs the {package!r} package, which is not installed; "
        f'install it: pip install -e ".[{package}]"'
    )
    assert not Path(cfg.paths.output_dir, "checkpoints").exists()  # stopped before training


def test_missing_package_outside_the_table_names_pip_install():
    expected = r"logger.x needs the 'seg_no_such_package' package.*: pip install seg_no_such_package$"
    with pytest.raises(UserError, match=expected), missing_package_hint("logger.x"):
        import seg_no_such_package.sub  # noqa: F401


def test_other_errors_pass_through():
    with pytest.raises(ZeroDivisionError), missing_package_hint("logger.x"):
        1 / 0  # noqa: B018
    assert build_loggers(OmegaConf.create({"logger": None})) == []
