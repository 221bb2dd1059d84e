"""Experiment loggers from `cfg.logger`: built, given the resolved config, and a missing optional package turned into
one line that names the pip extra to install. A resumed run's CSV log keeps the rows logged before its checkpoint."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.loggers import CSVLogger, Logger
from omegaconf import DictConfig, OmegaConf

from seg.errors import UserError

# Package a logger imports -> the extra of pyproject.toml that installs it. Other missing packages get `pip install`.
EXTRAS = {"mlflow": "mlflow", "wandb": "wandb"}


def build_loggers(cfg: DictConfig, *, resumed_at_step: int | None = None) -> list[Logger]:
    """One logger per entry of `cfg.logger`, each holding the resolved config (and so `tags`) as hyper-parameters.

    Logging the config starts the logger's experiment, which is where some loggers first import their package
    (WandbLogger does): a missing package then fails here, before any training, not at the first logged step.

    `resumed_at_step`: the run continues from a checkpoint of that global step. Lightning's CSV writer deletes the
    metrics.csv it finds when it starts; its rows logged before that step are read first and written back, so the
    resumed run's metrics.csv reads as one that never stopped (the steps from there on are logged again).
    """
    hparams = OmegaConf.to_container(cfg, resolve=True)
    loggers = []
    for name, node in (cfg.get("logger") or {}).items():
        with missing_package_hint(f"logger.{name}"):
            logger = instantiate(node)
            kept = rows_before(logger, resumed_at_step)
            logger.log_hyperparams(hparams)
        write_back(logger, kept)
        loggers.append(logger)
    return loggers


def rows_before(logger: Logger, step: int | None) -> list[dict[str, str]]:
    """The rows of a CSV logger's metrics.csv logged before `step` (Lightning logs a row of step s while the
    optimizer step s + 1 runs, so a checkpoint of global step n holds what rows of steps < n record); [] when
    nothing is resumed, for other loggers, or without a file."""
    if step is None or not isinstance(logger, CSVLogger):
        return []
    path = Path(logger.log_dir) / "metrics.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return [row for row in csv.DictReader(handle) if row.get("step") and int(row["step"]) < step]


def write_back(logger: Logger, rows: list[dict[str, str]]) -> None:
    """Log `rows` (as read from metrics.csv) again, unchanged, and write them out now."""
    for row in rows:
        values = {key: _number(text) for key, text in row.items() if key != "step" and text != ""}
        logger.log_metrics(values, step=int(row["step"]))
    if rows:
        logger.save()


def _number(text: str) -> int | float:
    """The value a CSV cell was written from: an int (epoch) or a float, whose repr reads back the same text."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def finish_loggers(loggers: list[Logger]) -> None:
    """End each experiment that has an end. W&B keeps one run per process and Lightning attaches any later WandbLogger
    to it: without this, every job of a multirun would log into the first job's run."""
    for logger in loggers:
        finish = getattr(logger.experiment, "finish", None)
        if callable(finish):
            finish()


@contextmanager
def missing_package_hint(key: str) -> Iterator[None]:
    """Re-raise an import failure under `key` as a UserError with the install command; other errors pass."""
    try:
        yield
    except (ImportError, InstantiationException) as error:
        cause = error.__cause__ if isinstance(error, InstantiationException) else error
        package = _missing_package(cause) if isinstance(cause, ImportError) else None
        if package is None:
            raise
        install = f'pip install -e ".[{EXTRAS[package]}]"' if package in EXTRAS else f"pip install {package}"
        raise UserError(f"{key} needs the {package!r} package, which is not installed; install it: {install}") from None


def _missing_package(error: ImportError) -> str | None:
    if error.name:  # a failed `import x.y` names the module
        return error.name.split(".")[0]
    # Lightning checks its loggers' packages itself and raises ModuleNotFoundError without a module name,
    # "Requirement 'mlflow>=1.0.0' not met. ...": find the package in the message.
    return next((package for package in EXTRAS if package in str(error)), None)
