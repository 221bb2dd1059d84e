"""seg/adapters.py: what the project relies on in Lightning and Hydra beyond their public API, pinned here.

An upgrade that changes one of these behaviours fails in this file first, naming the item to re-check.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import re
import sys

import hydra
import lightning
import pytest
import torch
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigAttributeError, ConfigKeyError
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from seg import adapters


class Tiny(lightning.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        (x,) = batch
        return self.layer(x).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Record(lightning.Callback):
    def __init__(self) -> None:
        self.after_batch: list[tuple[int, int]] = []
        self.after_epoch: list[int] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.after_batch.append((batch_idx, adapters.batches_trained_this_epoch(trainer)))

    def on_train_epoch_end(self, trainer, pl_module):
        self.after_epoch.append(adapters.batches_trained_this_epoch(trainer))


def test_batches_trained_this_epoch_counts_the_batch_just_trained_and_restarts_each_epoch(tmp_path):
    record = Record()
    data = DataLoader(TensorDataset(torch.randn(10, 2)), batch_size=2)  # 5 batches an epoch
    trainer = lightning.Trainer(
        max_epochs=2, accumulate_grad_batches=2, callbacks=[record], default_root_dir=tmp_path,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(Tiny(), data)
    assert record.after_batch == [(i, i + 1) for i in range(5)] * 2  # batches, not the optimizer steps of global_step
    assert record.after_epoch == [5, 5]


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seen: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append((record.name, record.getMessage()))


def test_lightning_chatter_still_comes_where_the_filters_listen(tmp_path):
    records = Records()
    names = [*adapters.RANK_ZERO_LOGGERS, adapters.WEIGHTS_ONLY[0]]
    for name in names:
        logging.getLogger(name).addHandler(records)
    try:
        trainer = lightning.Trainer(max_steps=1, default_root_dir=tmp_path, logger=False, enable_progress_bar=False)
        trainer.fit(Tiny(), DataLoader(TensorDataset(torch.randn(2, 2)), batch_size=2))
        trainer.save_checkpoint(tmp_path / "full.ckpt")  # what a resumable checkpoint does: no weights_only
    finally:
        for name in names:
            logging.getLogger(name).removeHandler(records)
    assert any(n in adapters.RANK_ZERO_LOGGERS and m.startswith(adapters.TIP) for n, m in records.seen), records.seen
    assert (adapters.WEIGHTS_ONLY[0], adapters.WEIGHTS_ONLY[1] + ", defaulting to `False`.") in records.seen


def test_resume_warnings_still_match_lightnings_text():
    sources = [
        "lightning.pytorch.loops.training_epoch_loop",
        "lightning.fabric.loggers.csv_logs",
        "lightning.pytorch.callbacks.model_checkpoint",
    ]
    for pattern, module in zip(adapters.RESUME_WARNINGS, sources, strict=True):
        assert re.search(pattern, inspect.getsource(importlib.import_module(module))), f"{pattern!r} left {module}"


@hydra.main(config_path=None, version_base="1.3")
def app(cfg) -> None:
    pass


def run_app(monkeypatch, tmp_path, *args: str) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["app.py", "hydra.output_subdir=null", "hydra.run.dir=.", *args])
    app()


def test_hydra_raises_its_errors_only_inside_the_switch(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv(adapters.HYDRA_FULL_ERROR, raising=False)
    with pytest.raises(SystemExit):  # Hydra's own report, printed
        run_app(monkeypatch, tmp_path, "nope=1")
    with adapters.hydra_raises_errors() as raising, pytest.raises(ConfigCompositionException) as caught:
        run_app(monkeypatch, tmp_path, "nope=1")
    assert raising and adapters.HYDRA_FULL_ERROR not in os.environ
    # seg/run/cli.py reads the unknown key from the cause's public fields, and the override from the command line
    assert isinstance(caught.value.__cause__, (ConfigAttributeError, ConfigKeyError))
    assert caught.value.__cause__.full_key == "nope"


def test_hydra_null_group_message(monkeypatch, tmp_path):
    monkeypatch.setenv(adapters.HYDRA_FULL_ERROR, "1")  # the user's own setting: left alone
    with adapters.hydra_raises_errors() as raising, pytest.raises(ValueError, match=f"^{adapters.NULL_GROUP}"):
        run_app(monkeypatch, tmp_path, "hydra/launcher=null")
    assert not raising
