"""tune.py for real: Optuna studies in SQLite and in a PostgreSQL server this file starts, workers that share one,
a study that continues, pruning on val/iou, and DDP trials whose ranks all train with the trial's values."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import pytest
from lightning.pytorch.callbacks import Callback
from optuna.trial import TrialState

from seg.paths import PROJECT_DIR
from seg.run.pruning import PRUNED_AT
from seg.run.train import train
from seg.run.tune import override_value, search_space
from tests.conftest import compose_config, tiny_overrides

optuna.logging.set_verbosity(optuna.logging.WARNING)
STUDY = "test"


def tune_overrides(tmp_path: Path, *extra: str) -> list[str]:
    """A tiny one-epoch trial per run; the sweep (the study's SQLite file, trial_NNNN/) under tmp_path/sweep."""
    tiny = [o for o in tiny_overrides(tmp_path) if not o.startswith(("paths.output_dir", "trainer.max_epochs"))]
    return [
        "hparams_search=optuna",
        f"tune.study_name={STUDY}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        *tiny,
        "trainer.max_epochs=1",
        *extra,
    ]


def start_worker(tmp_path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(PROJECT_DIR / "tune.py"), *tune_overrides(tmp_path), *args],
        cwd=tmp_path,
        env={**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(worker: subprocess.Popen, timeout: int = 900) -> tuple[int, str]:
    _, err = worker.communicate(timeout=timeout)
    return worker.returncode, err


def run_worker(tmp_path: Path, *args: str) -> tuple[int, str]:
    return finish(start_worker(tmp_path, *args))


def trials_of(url: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=STUDY, storage=url).trials


def check_every_trial_recorded_once(trials: list[optuna.trial.FrozenTrial], sweep: Path) -> None:
    """Each trial finished, numbered without gaps, with one run directory whose summary gave its value."""
    assert [t.number for t in trials] == list(range(len(trials)))
    assert all(t.state == TrialState.COMPLETE for t in trials), [t.state for t in trials]
    assert sorted(p.name for p in sweep.glob("trial_*")) == [f"trial_{t.number:04d}" for t in trials]
    for t in trials:
        summary = json.loads((sweep / f"trial_{t.number:04d}" / "summary.json").read_text())
        assert summary["val/iou"] == pytest.approx(t.value)
        overrides = (sweep / f"trial_{t.number:04d}" / ".hydra" / "overrides.yaml").read_text()
        assert f"optimizer.lr={t.params['optimizer.lr']!r}" in overrides


def test_search_space_is_the_yaml_ranges():
    cfg = compose_config(["hparams_search=optuna"])
    space = search_space(cfg.tune.params)
    assert sorted(space) == ["optimizer.lr", "optimizer.weight_decay"]
    study = optuna.create_study()
    for _ in range(5):
        trial = study.ask()
        lr, decay = space["optimizer.lr"](trial, "optimizer.lr"), space["optimizer.weight_decay"](trial, "x")
        assert 1e-3 <= lr <= 3e-2 and 1e-5 <= decay <= 1e-2
    assert study.trials[0].distributions["optimizer.lr"].log


def test_trial_values_and_storage_urls_survive_hydras_override_grammar():
    url = "postgresql://me:p@ss'w=rd@db.example:5432/optuna"
    lr = 0.0012345678901234567
    cfg = compose_config(["hparams_search=optuna", f"tune.storage={override_value(url)}", f"optimizer.lr={lr!r}"])
    assert cfg.tune.storage == url and cfg.optimizer.lr == lr


@pytest.mark.slow  # several CLI processes: tens of seconds each
def test_tune_without_a_search_space_or_with_a_wrong_metric_says_so_in_one_line(tmp_path):
    for args, start in (
        ([f"hydra.sweep.dir={tmp_path / 'a'}"], "error: tune.py needs a search space: add hparams_search=optuna"),
        ([*tune_overrides(tmp_path), "optimized_metric=val/iuo"], "error: optimized_metric='val/iuo' is not a metric"),
    ):
        result = subprocess.run(
            [sys.executable, str(PROJECT_DIR / "tune.py"), *args], cwd=tmp_path, capture_output=True, text=True
        )
        assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].startswith(start), result.stderr
        assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("sweep/trial_*"))


def test_a_pruned_trial_stops_after_the_epoch_it_reported(tmp_path):
    """ThresholdPruner(lower=1.1): no IoU reaches it, so the first report prunes; 3 epochs shrink to one."""
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name=STUDY, storage=url, direction="maximize")
    trial = study.ask()
    cfg = compose_config(
        [
            *tiny_overrides(tmp_path),
            "hparams_search=optuna",
            f"tune.study_name={STUDY}",
            f"tune.storage={override_value(url)}",
            f"tune.trial={trial.number}",
            "~tune.pruner",
            "+tune.pruner={_target_: optuna.pruners.ThresholdPruner, lower: 1.1}",
        ]
    )
    summary = train(cfg)
    assert summary["global_step"] == 32 // 8  # one epoch of the three
    frozen = study.trials[0]
    assert list(frozen.intermediate_values) == [0] and frozen.user_attrs[PRUNED_AT] == 0
    assert frozen.state == TrialState.RUNNING  # the worker, not the run, tells the study


def test_a_trial_outside_tune_py_reports_nothing(tmp_path):
    """train.py hparams_search=optuna (tune.trial null): the callback stays idle and the run is an ordinary one."""
    cfg = compose_config(
        [*tiny_overrides(tmp_path), "hparams_search=optuna", f"tune.study_name={STUDY}", "trainer.max_epochs=1"]
    )
    assert train(cfg)["global_step"] == 32 // 8


# PostgreSQL: Debian's server (apt-get install postgresql), started by the test as its own cluster on a free port.


def _no_postgres(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI installs PostgreSQL (.ci/run), so the shared-study test must run")
    pytest.skip(reason)


def _postgres_tool(name: str) -> str | None:
    debian = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))  # Debian keeps them off PATH
    return shutil.which(name) or (str(debian[-1]) if debian else None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    pytest.importorskip("psycopg2", reason='pip install -e ".[sweep]" (psycopg2-binary)')
    initdb, pg_ctl = _postgres_tool("initdb"), _postgres_tool("pg_ctl")
    if not (initdb and pg_ctl):
        _no_postgres("no PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql")
    as_user: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="seg-postgres-"))
    if os.geteuid() == 0:  # the server refuses to run as root: run it as Debian's postgres user
        if shutil.which("runuser") is None or subprocess.run(["id", "postgres"], capture_output=True).returncode:
            shutil.rmtree(base)
            _no_postgres("running as root, and there is no postgres user (or runuser) to start the server as")
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(base, "postgres")
    port, data = _free_port(), base / "data"
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [*as_user, initdb, "-D", data, "-A", "trust", "-U", "seg", "--no-sync"], check=True, capture_output=True
    )
    start = subprocess.run([*as_user, pg_ctl, "-D", data, "-l", base / "log", "-o", options, "-w", "start"], capture_output=True, text=True)  # fmt: skip
    assert start.returncode == 0, start.stdout + start.stderr + (base / "log").read_text()
    try:
        yield f"postgresql+psycopg2://seg@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", data, "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


SHARING_WORKER = """
import os, sys, optuna
from seg.run.tune import open_storage, work
storage = open_storage(sys.argv[1], heartbeat=60)
study = optuna.create_study(study_name="shared", storage=storage, direction="maximize", load_if_exists=True)
def objective(trial):
    trial.set_user_attr("pid", os.getpid())
    return trial.suggest_float("x", 0.0, 1.0)
work(study, objective, n_trials=int(sys.argv[2]))
"""


def test_two_worker_processes_fill_one_postgres_study_without_losing_a_trial(tmp_path, postgres_url):
    """The storage and the stopping rule of tune.py, with an instant objective: two processes started together
    on an empty database (both create its tables) share 20 trials."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_DIR)}
    command = [sys.executable, "-c", SHARING_WORKER, postgres_url, "20"]
    workers = [subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for worker in workers:
        assert worker.wait(timeout=300) == 0, worker.stderr.read()[-3000:]
    trials = optuna.load_study(study_name="shared", storage=postgres_url).trials
    assert 20 <= len(trials) <= 21 and [t.number for t in trials] == list(range(len(trials)))
    assert all(t.state == TrialState.COMPLETE and t.value == t.params["x"] for t in trials)
    assert {t.user_attrs["pid"] for t in trials} == {w.pid for w in workers}


@pytest.mark.slow
def test_two_workers_share_one_postgres_study(tmp_path, postgres_url):
    """Two tune.py processes started together on an empty database: 3 trials between them, each recorded once."""
    workers = [
        start_worker(tmp_path, f"tune.storage={override_value(postgres_url)}", "tune.n_trials=3") for _ in range(2)
    ]
    for worker in workers:
        status, err = finish(worker)
        assert status == 0, err[-3000:]
    trials = trials_of(postgres_url)
    assert len(trials) in (3, 4)  # two workers finishing together may both start a last trial
    check_every_trial_recorded_once(trials, tmp_path / "sweep")
    assert len({t.user_attrs["host"] for t in trials}) == 2  # both workers ran trials of the one study
    assert not (tmp_path / "sweep" / "optuna.db").exists()


@pytest.mark.slow
def test_a_study_continues_where_it_stopped(tmp_path):
    """The default storage is <sweep dir>/optuna.db; the same command with more trials adds only the new ones,
    and a worker with other overrides is refused before it trains."""
    assert run_worker(tmp_path, "tune.n_trials=1")[0] == 0
    status, err = run_worker(tmp_path, "tune.n_trials=2")
    assert status == 0, err[-3000:]
    url = f"sqlite:///{tmp_path / 'sweep' / 'optuna.db'}"
    check_every_trial_recorded_once(trials_of(url), tmp_path / "sweep")
    assert len(trials_of(url)) == 2 and len(list((tmp_path / "sweep" / "workers").iterdir())) == 2
    status, err = run_worker(tmp_path, "tune.n_trials=3", "data.batch_size=4")
    assert status == 2 and "was started with overrides" in err.strip().splitlines()[-1], err[-2000:]
    assert len(trials_of(url)) == 2


class RecordHyperparameters(Callback):
    """Each rank writes the learning rate and weight decay its optimizer was built with (test of DDP trials)."""

    def on_train_start(self, trainer, pl_module) -> None:
        defaults = trainer.optimizers[0].defaults
        path = Path(trainer.default_root_dir) / f"rank{trainer.global_rank}.json"
        path.write_text(json.dumps({"lr": defaults["lr"], "weight_decay": defaults["weight_decay"]}))


@pytest.mark.slow
def test_a_ddp_trial_trains_with_the_trials_values_on_every_rank(tmp_path):
    status, err = run_worker(
        tmp_path,
        "tune.n_trials=1",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.precision=32-true",
        "+callbacks.record._target_=tests.test_tune.RecordHyperparameters",
    )
    assert status == 0, err[-3000:]
    (trial,) = trials_of(f"sqlite:///{tmp_path / 'sweep' / 'optuna.db'}")
    run_dir = tmp_path / "sweep" / "trial_0000"
    ranks = [json.loads((run_dir / f"rank{r}.json").read_text()) for r in (0, 1)]
    expected = {"lr": trial.params["optimizer.lr"], "weight_decay": trial.params["optimizer.weight_decay"]}
    assert ranks == [expected, expected]
    assert trial.state == TrialState.COMPLETE and list(trial.intermediate_values) == [0]  # rank zero reported, once


@pytest.mark.slow
def test_the_worker_records_a_pruned_trial_as_pruned(tmp_path):
    status, err = run_worker(
        tmp_path,
        "tune.n_trials=1",
        "trainer.max_epochs=3",
        "~tune.pruner",
        "+tune.pruner={_target_: optuna.pruners.ThresholdPruner, lower: 1.1}",
    )
    assert status == 0, err[-3000:]
    (trial,) = trials_of(f"sqlite:///{tmp_path / 'sweep' / 'optuna.db'}")
    assert trial.state == TrialState.PRUNED and list(trial.intermediate_values) == [0]
    assert json.loads((tmp_path / "sweep" / "trial_0000" / "summary.json").read_text())["global_step"] == 32 // 8
