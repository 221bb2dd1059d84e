"""`tune(cfg)`: one Optuna worker. It asks the study for a trial, runs it as `python train.py ...` and tells the
study the trial's `optimized_metric`, until the study holds `tune.n_trials` trials.

The study lives in a database (SQLite in the sweep directory by default, PostgreSQL or MySQL for many machines):
workers on any number of machines that point at one `tune.storage` and `tune.study_name` share one study, and a
worker started again continues it. Each trial is a train.py process whose command line carries the trial's values,
so every DDP rank Lightning starts (it re-runs that command line) trains with the same values, and a trial cannot
leak memory or CUDA state into the next. seg/run/pruning.py reports `val/iou` from inside it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import sqlalchemy.exc
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.storages import RDBStorage, RetryFailedTrialCallback
from optuna.trial import TrialState

from seg.errors import UserError
from seg.paths import PROJECT_DIR
from seg.run.pruning import pruned_epoch
from seg.run.train import check_optimized_metric, optimized_value

log = logging.getLogger(__name__)
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)  # toward n_trials; failed ones are retried
OWN_KEYS = ("tune.storage", "tune.study_name", "tune.trial", "hydra.run.dir")  # set per trial by the worker
LOCAL_KEYS = ("tune.", "hydra.", "hydra/", "data.root=")  # may differ between the workers of one study
Suggest = Callable[[optuna.trial.Trial, str], object]  # functools.partial(Trial.suggest_float, low=..., ...)


def tune(cfg: DictConfig) -> optuna.Study:
    if cfg.get("tune") is None:
        raise UserError("tune.py needs a search space: add hparams_search=optuna (conf/hparams_search/)")
    check_optimized_metric(cfg.optimized_metric)
    space = search_space(cfg.tune.params)
    sweep_dir = Path(HydraConfig.get().sweep.dir).absolute()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    url = storage_url(cfg.tune.storage, sweep_dir)
    study = open_study(cfg, url)
    fixed = fixed_overrides(HydraConfig.get().overrides.task)
    check_same_overrides(study, fixed)
    objective = trial_objective(cfg, space=space, fixed=fixed, url=url, sweep_dir=sweep_dir)
    work(study, objective, n_trials=cfg.tune.n_trials)
    log.info("study %s holds %d trials; best: %s", study.study_name, len(study.trials), best_line(study))
    return study


def work(study: optuna.Study, objective: Callable[[optuna.trial.Trial], float], *, n_trials: int) -> None:
    """Run trials until the study (all its workers together) holds `n_trials`."""
    while open_slots(study, n_trials) > 0:
        # One trial per call: another worker may have filled the study meanwhile. A failing trial stops this
        # worker (a broken config would fail every trial); its run directory says why.
        study.optimize(objective, n_trials=1, gc_after_trial=False)


def search_space(params: DictConfig) -> dict[str, Suggest]:
    """Flatten `tune.params` (nested like the config it overrides) into `{"optimizer.lr": suggest, ...}`."""
    space: dict[str, Suggest] = {}

    def walk(node: DictConfig, prefix: str) -> None:
        for key, value in node.items():
            name = f"{prefix}{key}"
            if not isinstance(value, DictConfig):
                raise UserError(
                    f"tune.params.{name}={value!r}: each parameter needs a `_target_: optuna.trial.Trial.suggest_*` node (conf/hparams_search/optuna.yaml)"
                )
            if "_target_" in value:
                space[name] = instantiate(value, _partial_=True)
            else:
                walk(value, f"{name}.")

    walk(params, "")
    if not space:
        raise UserError("tune.params is empty: give at least one parameter to search (conf/hparams_search/optuna.yaml)")
    return space


def storage_url(storage: str | None, sweep_dir: Path) -> str:
    return storage or f"sqlite:///{sweep_dir / 'optuna.db'}"


def open_storage(url: str, *, heartbeat: int) -> RDBStorage:
    """The database, with heartbeats: a trial whose worker died (killed, machine lost) is marked failed after
    `2 * heartbeat` seconds and asked again with the same values by the next worker that starts a trial."""
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    attempt = 0
    while True:
        try:
            return RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat,
                grace_period=2 * heartbeat,
                failed_trial_callback=RetryFailedTrialCallback(max_retry=2),
            )
        except sqlalchemy.exc.IntegrityError:
            # Workers started together on an empty database race to create its tables; the loser finds them.
            attempt += 1
            if attempt == 5:
                raise
            time.sleep(0.5 * attempt)
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.ArgumentError, ModuleNotFoundError) as error:
            raise UserError(
                f"tune.storage={url!r}: cannot open the database ({first_line(error)}); check the URL, the server and its driver (psycopg2-binary for postgresql://)"
            ) from None


def open_study(cfg: DictConfig, url: str) -> optuna.Study:
    return optuna.create_study(
        study_name=cfg.tune.study_name,
        storage=open_storage(url, heartbeat=cfg.tune.heartbeat_seconds),
        sampler=instantiate(cfg.tune.sampler),
        pruner=instantiate(cfg.tune.pruner),
        direction=cfg.tune.direction,
        load_if_exists=True,  # a second worker, or this one started again, continues the study
    )


def fixed_overrides(task: list[str]) -> list[str]:
    """The command line's overrides that every trial repeats (the worker sets the others itself)."""
    return [o for o in task if o.lstrip("+~").split("=", 1)[0] not in OWN_KEYS]


def check_same_overrides(study: optuna.Study, fixed: list[str]) -> None:
    """Workers of one study must train the same thing: the first records its overrides, the others compare.

    Keys that say how or where this worker runs, not what a trial trains, may differ: `tune.*`, `hydra.*` and
    `data.root` (where this machine keeps the data).
    """
    mine = sorted(o for o in fixed if not o.lstrip("+~").startswith(LOCAL_KEYS))
    recorded = study.user_attrs.get("overrides")
    if recorded is None:
        study.set_user_attr("overrides", mine)
    elif recorded != mine:
        raise UserError(
            f"study {study.study_name!r} was started with overrides {recorded}, this worker has {mine}: give the same overrides, or a new tune.study_name for a new study"
        )


def open_slots(study: optuna.Study, n_trials: int) -> int:
    """Trials still to start; running ones count, so workers that finish together overshoot by at most one each."""
    return n_trials - len(study.get_trials(deepcopy=False, states=COUNTED))


def trial_objective(
    cfg: DictConfig, *, space: dict[str, Suggest], fixed: list[str], url: str, sweep_dir: Path
) -> Callable[[optuna.trial.Trial], float]:
    def objective(trial: optuna.trial.Trial) -> float:
        values = {name: suggest(trial, name) for name, suggest in space.items()}
        run_dir = sweep_dir / f"trial_{trial.number:04d}"
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("host", f"{socket.gethostname()}:{os.getpid()}")
        command = [
            sys.executable,
            str(PROJECT_DIR / "train.py"),
            *fixed,
            *(f"{name}={override_value(value)}" for name, value in values.items()),
            f"hydra.run.dir={override_value(str(run_dir))}",
            f"tune.storage={override_value(url)}",
            f"tune.study_name={override_value(trial.study.study_name)}",
            f"tune.trial={trial.number}",
        ]
        log.info("trial %d: %s", trial.number, " ".join(f"{k}={v}" for k, v in values.items()))
        # tune.py's report_config_errors set HYDRA_FULL_ERROR=1 for itself; train.py's sets its own
        status = subprocess.run(command, env={**os.environ, "HYDRA_FULL_ERROR": "0"}).returncode
        if status != 0:
            raise UserError(
                f"trial {trial.number}: train.py exited with status {status}; its log: {run_dir / 'train.log'}"
            )
        epoch = pruned_epoch(trial.study.study_name, url, trial.number)  # seg/run/pruning.py stopped the run
        if epoch is not None:
            raise optuna.TrialPruned(f"trial {trial.number} pruned after epoch {epoch}")
        summary = json.loads((run_dir / "summary.json").read_text())
        return optimized_value(summary, cfg.optimized_metric)

    return objective


def override_value(value: object) -> str:
    """A value as Hydra's override grammar reads it back: numbers as they are, strings quoted."""
    if isinstance(value, bool) or value is None:
        return OmegaConf.to_yaml({"v": value}).split(": ", 1)[1].strip()
    if isinstance(value, int | float):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def best_line(study: optuna.Study) -> str:
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not done:
        return "no completed trial"
    best = study.best_trial
    return f"trial {best.number}, {best.value:.4f}, {best.params}"


def first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
