"""Experiment loggers from `cfg.logger`: built, given the resolved config, and a missing optional package turned into
one line that names the pip extra to install."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from seg.errors import UserError

# Package a logger imports -> the extra of pyproject.toml that installs it. Other missing packages get `pip install`.
EXTRAS = {"mlflow": "mlflow", "wandb": "wandb"}


def build_loggers(cfg: DictConfig) -> list[Logger]:
    """One logger per entry of `cfg.logger`, each holding the resolved config (and so `tags`) as hyper-parameters.

    Logging the config starts the logger's experiment, which is where some loggers first import their package
    (WandbLogger does): a missing package then fails here, before any training, not at the first logged step.
    """
    hparams = OmegaConf.to_container(cfg, resolve=True)
    loggers = []
    for name, node in (cfg.get("logger") or {}).items():
        with missing_package_hint(f"logger.{name}"):
            logger = instantiate(node)
            logger.log_hyperparams(hparams)
        loggers.append(logger)
    return loggers


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
