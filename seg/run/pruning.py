"""Pruning from inside a trial's train.py run: report `val/iou` after each validation, stop when the pruner says so.

The trial was asked by a worker (seg/run/tune.py) in another process; this run finds it in the study's database by
its number. optuna-integration's PyTorchLightningPruningCallback is not used: in one process it raises TrialPruned
inside `fit`, which would end train.py without a summary, and its DDP mode expects the ranks to share the asking
process's Trial object. Here rank zero reports, every rank stops together, and the run ends as a short run does
(best checkpoint evaluated, summary.json written); the worker then records the trial as pruned.
"""

from __future__ import annotations

import logging

import lightning as L
import optuna
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from optuna.storages import RDBStorage

log = logging.getLogger(__name__)
PRUNED_AT = "pruned_at_epoch"  # trial user attribute the worker reads


class PruneTrial(Callback):
    def __init__(
        self,
        *,
        trial: int | None,
        study_name: str,
        storage: str | None,
        pruner: optuna.pruners.BasePruner,
        monitor: str,
    ) -> None:
        super().__init__()
        self.trial_number = trial  # None: not a trial of tune.py (train.py hparams_search=optuna): do nothing
        self.study_name = study_name
        self.storage = storage
        self.pruner = pruner
        self.monitor = monitor
        self._trial: optuna.trial.Trial | None = None
        if trial is None:  # the old `train.py hparams_search=optuna` swept; now tune.py does
            log.warning(
                "hparams_search=optuna outside tune.py: one ordinary run; the search is `python tune.py hparams_search=optuna ...`"
            )

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.trial_number is not None and trainer.is_global_zero:
            self._trial = find_trial(self.study_name, self.storage, self.trial_number, self.pruner)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.trial_number is None or trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return  # train() validates the best checkpoint after fit: that is the result, not an epoch's report
        prune = False
        if trainer.is_global_zero and self.monitor in trainer.callback_metrics:
            epoch = trainer.current_epoch
            self._trial.report(float(trainer.callback_metrics[self.monitor]), step=epoch)
            prune = self._trial.should_prune()
            if prune:
                self._trial.set_user_attr(PRUNED_AT, epoch)
        if trainer.strategy.broadcast(prune):  # rank zero decides for every rank
            trainer.should_stop = True


def find_trial(study_name: str, url: str, number: int, pruner: optuna.pruners.BasePruner) -> optuna.trial.Trial:
    storage = RDBStorage(url)
    return optuna.trial.Trial(
        optuna.load_study(study_name=study_name, storage=storage, pruner=pruner), trial_id(storage, study_name, number)
    )


def pruned_epoch(study_name: str, url: str, number: int) -> int | None:
    """The epoch after which the trial's run stopped, or None, read from the database: the asking process's own
    Trial object caches its attributes from before the run."""
    storage = RDBStorage(url)
    return storage.get_trial_user_attrs(trial_id(storage, study_name, number)).get(PRUNED_AT)


def trial_id(storage: RDBStorage, study_name: str, number: int) -> int:
    return storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study_name), number)
