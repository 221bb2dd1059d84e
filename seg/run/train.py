"""`train(cfg) -> dict`: build everything from the config, fit, evaluate the best checkpoint, write summary.json."""

from __future__ import annotations

import json
import logging
import signal
import time
from pathlib import Path

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table
from torch.utils.data import DataLoader

from seg.data.collate import PadCollate
from seg.errors import Interrupted, UserError
from seg.inference.checkpoint import store_operating_point
from seg.inference.operating_point import measure_operating_point
from seg.model.module import SegmentationModule
from seg.model.network import build_network
from seg.run.callbacks.resilience import ResumableCheckpoint
from seg.run.config_check import check_values
from seg.run.config_tree import print_config_tree
from seg.run.loggers import build_loggers, finish_loggers
from seg.run.provenance import source_commit
from seg.run.resolvers import register_resolvers
from seg.run.resume import (
    Continuation,
    ScaleRestoredLearningRate,
    check_settled,
    continuation,
    in_multirun,
    learning_rate_ratio,
)
from seg.run.rundir import check_space, claim, let_go

log = logging.getLogger(__name__)
register_resolvers()  # build() resolves optimizer.lr (`seg.times`) also where train.py's entry point did not run
REPORTED = ("val/iou", "val/dice", "test/iou", "test/dice")
LAST_EPOCH = ("train/iou", "train/dice")  # of the last training epoch, as logged during it (what debug=overfit reads)
OPTIMIZABLE = (*REPORTED, *LAST_EPOCH, "train_seconds")  # the float entries of summary.json


def build(
    cfg: DictConfig, *, resumed_at_step: int | None = None
) -> tuple[L.LightningModule, L.LightningDataModule, L.Trainer]:
    """Instantiate module, data and trainer from a composed config; nothing runs yet. `resumed_at_step`: the step
    of the checkpoint a resumed run continues from (its loggers keep what was logged before it).

    `cfg` is not changed: the values the data settles (`auto` channels and normalization) go to the network as
    arguments and into the config the module stores in its checkpoints (`module.config`, see settled_config).
    """
    head = instantiate(cfg.head)
    datamodule = build_data(cfg)
    settled = settled_config(cfg, datamodule)
    settle_head(head, datamodule, settled)
    net = build_network(cfg.model, head=head, in_channels=settled["data"]["in_channels"])
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    module = SegmentationModule(
        net=net,
        head=head,
        optimizer=instantiate(cfg.optimizer),
        scheduler=scheduler,
        config=settled,
        last_layer_lr_scale=cfg.get("last_layer_lr_scale", 1.0),
    )
    loggers = build_loggers(cfg, resumed_at_step=resumed_at_step)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
    return module, datamodule, trainer


def build_data(cfg: DictConfig) -> L.LightningDataModule:
    """The datamodule, set up: its validation pass has run and its `auto` values are settled (`resolved()`).

    Called before the model exists: bad data stops the run before anything trains, and the network gets the
    settled channel count.
    """
    augment = instantiate(cfg.augment) if cfg.get("augment") else None
    datamodule = instantiate(cfg.data, train_transform=augment, seed=cfg.seed)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def settled_config(cfg: DictConfig, datamodule: L.LightningDataModule) -> dict:
    """The run's resolved config as a plain dict, with the data's `auto` values replaced by what they settled on.

    This is what checkpoints store (seg/inference/checkpoint.py) and config.yaml records: eval.py and predict.py reuse the
    channel count and normalization training used.
    """
    config = OmegaConf.to_container(cfg, resolve=True)
    config["data"].update(datamodule.resolved())
    return config


def settle_head(head, datamodule: L.LightningDataModule, settled: dict) -> None:
    """head.pos_weight=auto -> (1 - f) / f for the training split's foreground fraction f, recorded in the settled
    config as a number (checkpoints, config.yaml), as the data's `auto` values are."""
    if getattr(head, "pos_weight", None) != "auto":
        return
    settled["head"]["pos_weight"] = head.settle_pos_weight(datamodule.foreground_fraction())
    log.info("head.pos_weight=auto settled on %.4g", settled["head"]["pos_weight"])


def refuse_ddp_in_multirun(trainer: L.Trainer) -> None:
    """DDP whose ranks Lightning starts itself cannot run inside a -m multirun: it re-runs the script per rank.

    With the basic launcher each rank would run the whole sweep again (the known Lightning + Hydra hang); under
    joblib's worker processes there is no script to re-run. Under hydra/launcher=slurm each job's ranks are SLURM
    tasks started by srun, so Lightning starts nothing and the combination works.
    """
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return
    strategy = trainer.strategy
    launcher = getattr(strategy, "launcher", None)
    environment = getattr(strategy, "cluster_environment", None)
    if launcher is None or trainer.world_size <= 1:
        return
    if environment is not None and environment.creates_processes_externally:
        return  # SLURM (submitit) or torchrun started the ranks
    raise UserError(
        f"trainer.devices={trainer.num_devices} with strategy {type(strategy).__name__} inside a -m multirun:"
        " Lightning would re-run the whole sweep in every rank; run DDP jobs one at a time without -m,"
        " or sweep with hydra/launcher=slurm (each job's ranks are SLURM tasks), or set trainer.devices=1"
    )


def train(cfg: DictConfig) -> dict:
    """Fit, then evaluate the best checkpoint (by `val/iou`) on val and test. Returns the summary dict."""
    check_optimized_metric(cfg.get("optimized_metric"))  # before training, not after: a sweep would waste a job
    check_values(cfg)  # trainer.max_epochs=abc, optimizer.lr=-1: one line now, not an error inside Lightning or torch
    check_accelerator(cfg.trainer)
    source_commit()  # read (and cached) now, near when this process loaded its code, not after hours of training
    run_dir = Path(cfg.paths.output_dir)
    earlier = continuation(cfg)  # resume=, or a sweep job launched again: checked before anything is written
    if earlier.finished is not None:
        log.info("%s: finished with this config by an earlier launch of the sweep; skipped", run_dir)
        return earlier.finished
    L.seed_everything(cfg.seed, workers=True)
    if rank_zero_only.rank == 0:  # DDP ranks share the directory rank zero claimed
        claim(run_dir, resuming=earlier.resuming, sweep_job=in_multirun())
    try:
        return _fit_and_evaluate(cfg, run_dir, earlier)
    finally:
        let_go(run_dir)  # the directory's lock: a later run in this process (or another process) may take it


def _fit_and_evaluate(cfg: DictConfig, run_dir: Path, earlier: Continuation) -> dict:
    print_config_tree(cfg, run_dir / "config_tree.log")
    module, datamodule, trainer = build(cfg, resumed_at_step=earlier.step)
    if earlier.resuming:
        check_settled(earlier.saved, module.config, where=f"resume {run_dir}")
        if (ratio := learning_rate_ratio(earlier.saved, cfg)) != 1.0:
            trainer.callbacks.append(ScaleRestoredLearningRate(ratio))
    refuse_ddp_in_multirun(trainer)
    check_space(run_dir, checkpoint_bytes(module))

    start = time.perf_counter()
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=earlier.checkpoint)
    except SIGTERMException:  # Lightning's stop on SIGTERM, a SystemExit; ResumableCheckpoint saved last.ckpt
        raise _interruption(trainer) from None
    train_seconds = time.perf_counter() - start
    metrics = trainer.callback_metrics  # read now: validate() and test() below replace them
    last_epoch = {key: float(metrics[key]) if key in metrics else None for key in LAST_EPOCH}

    # The final weights, before the evaluation below loads best.ckpt over them: what early stopping would hide
    # (a long schedule, memorised label noise). Rank 0 only, on every image of val and test.
    final = final_weights(module, datamodule, trainer) if cfg.get("evaluate_last") and trainer.is_global_zero else {}
    best = _best_checkpoint(trainer)
    # Without a best checkpoint (no validation ran, e.g. max_steps shorter than an epoch, or checkpointing off,
    # as under fast_dev_run) the final weights are evaluated instead, and summary.json says so with
    # best_checkpoint = null.
    ckpt_path = str(best) if best else None
    if best is None:
        log.warning(
            "no best checkpoint (no validation before training stopped, or fast_dev_run): evaluating the final weights"
        )
    val = trainer.validate(module, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False)[0]
    test = trainer.test(module, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False)[0]
    finish_loggers(trainer.loggers)

    summary = {
        "head": module.head.name,
        "seed": cfg.seed,
        "tags": list(cfg.get("tags") or []),
        **{key: float({**val, **test}[key]) for key in REPORTED},
        **last_epoch,
        **final,
        "best_checkpoint": str(best) if best else None,
        "train_seconds": round(train_seconds, 2),
        "global_step": trainer.global_step,
        "epochs": trainer.current_epoch,
        "run_dir": str(run_dir),
        "commit": source_commit(),  # the code that made these numbers ("-dirty": with uncommitted changes)
    }
    if trainer.is_global_zero:  # under DDP every rank runs this function; one writes
        summary.update(operating_point(module, datamodule, trainer.strategy.root_device, best, run_dir))
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        OmegaConf.save(OmegaConf.create(module.config), run_dir / "config.yaml")  # with the settled data values
        print_summary(summary)
    return summary


def operating_point(module, datamodule, device, best: Path | None, run_dir: Path) -> dict:
    """The best weights' threshold picked and temperature fitted on val, test scored at them, reliability.png
    (seg/inference/operating_point.py); the two values go into best.ckpt, where eval.py and predict.py read them."""
    entries = measure_operating_point(module.net.to(device), module.head, _eval_loaders(datamodule), device, run_dir)
    if best is not None:
        store_operating_point(best, {key: entries[key] for key in ("val_threshold", "temperature")})
    return entries


def final_weights(module, datamodule, trainer: L.Trainer) -> dict:
    """`last/...`: the final weights' val and test IoU and Dice at 0.5, test at the threshold tuned on val, AP,
    ECE and Brier (`evaluate_last: true`), beside the best checkpoint's entries of the same names."""
    device = trainer.strategy.root_device
    net = module.net.to(device)
    entries = measure_operating_point(net, module.head, _eval_loaders(datamodule), device, None, at_half=True)
    return {f"last/{key}": float(value) for key, value in entries.items()}


def _eval_loaders(datamodule) -> dict[str, DataLoader]:
    # Every image in one process: under DDP the datamodule's own loaders hold one rank's share.
    return {
        split: DataLoader(
            datamodule.splits[split],
            batch_size=datamodule.eval_batch_size,
            collate_fn=PadCollate(datamodule.pad_multiple),
        )
        for split in ("val", "test")
    }


def _interruption(trainer: L.Trainer) -> Interrupted:
    resumable = next((c for c in trainer.callbacks if isinstance(c, ResumableCheckpoint)), None)
    if resumable is None:
        return Interrupted(
            f"SIGTERM at step {trainer.global_step}: no checkpoint to resume from", signum=signal.SIGTERM
        )
    return resumable.interrupted(trainer)


def checkpoint_bytes(module: L.LightningModule) -> int:
    """About what the run's two checkpoints take (conf/callbacks/default.yaml): last.ckpt holds the weights and
    AdamW's two moments per parameter, best.ckpt the weights alone."""
    weights = sum(t.numel() * t.element_size() for t in module.state_dict().values())
    return 3 * weights + weights


def _best_checkpoint(trainer: L.Trainer) -> Path | None:
    """best.ckpt of the first ModelCheckpoint (ResumableCheckpoint, which writes last.ckpt, is a Checkpoint too)."""
    callback = next((c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)), None)
    path = callback.best_model_path if callback is not None else ""
    return Path(path) if path and Path(path).exists() else None


def check_accelerator(settings: DictConfig) -> None:
    """trainer=gpu where torch sees no GPU: Lightning's "No supported gpu backend found!" does not say what to do."""
    if str(settings.get("accelerator")) in ("gpu", "cuda") and not torch.cuda.is_available():
        raise UserError(
            f"trainer.accelerator={settings.accelerator}: torch sees no CUDA GPU on this machine; use"
            " trainer=cpu, or trainer=default (the GPU when there is one, else the CPU), or check the GPU driver"
            " and CUDA_VISIBLE_DEVICES"
        )


def check_optimized_metric(metric: str | None) -> None:
    if metric is not None and metric not in OPTIMIZABLE:
        raise UserError(f"optimized_metric={metric!r} is not a metric of this run; choose one of {list(OPTIMIZABLE)}")


def optimized_value(summary: dict, metric: str | None) -> float | None:
    """The number a sweeper maximizes; a name that is not in the summary is a config mistake, not None."""
    if metric is None:
        return None
    if metric not in summary or not isinstance(summary[metric], float):
        valid = [k for k, v in summary.items() if isinstance(v, float)]
        raise UserError(f"optimized_metric={metric!r} is not a metric of this run; choose one of {valid}")
    return summary[metric]


def print_summary(summary: dict) -> None:
    table = Table(title=f"{summary['head']}  seed={summary['seed']}  {summary['train_seconds']:.0f}s")
    for key in REPORTED:
        table.add_column(key, justify="right")
    table.add_row(*(f"{summary[key]:.4f}" for key in REPORTED))
    console = Console()
    console.print(table)
    console.print(f"run directory: {summary['run_dir']}")
