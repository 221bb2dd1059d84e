"""Continuing a run: `resume=<run dir>`, or a job of a multirun launched again into the same `hydra.sweep.dir`.

A run continues only with the config it started with. Every leaf of the config its last.ckpt holds must equal
this command line's, except:
- where the run writes (`paths`; values under the run directory compare relative to it, so a moved run resumes),
  `resume` itself, and `trainer.max_epochs` (longer training; see `_laid_over_the_budget`);
- `auto` values, which count as whatever they settled on in the first run (checked again once the data has
  settled them: `check_settled`);
- keys the user names in `resume_allow=[...]`, a change made knowingly (e.g. a lower `optimizer.lr` after the NaN
  guard stopped the run: the restored optimizer and schedule are scaled to it, `ScaleRestoredLearningRate`).

docs/resume.md is the user's side of this.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_object
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, OmegaConf

from seg.errors import UserError
from seg.inference.checkpoint import read_checkpoint, saved_config

log = logging.getLogger(__name__)

LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"  # what resume= continues from (conf/callbacks/default.yaml)
NO_CHECKPOINT = f"no {LAST_CHECKPOINT} there; pass a run directory that wrote checkpoints"
SUMMARY = "summary.json"
SETTLED = "config.yaml"  # the finished run's config with the data's settled values (train.py)
# What a resumed run may change: where it writes, how it is told to resume, and how long it trains.
RESUMABLE_CHANGES = ("resume", "resume_allow", "paths", "trainer.max_epochs")
AUTO = "auto"
ABSENT = "<absent>"
# Keys added to conf/ after runs were made, with the value that does what the code did before they existed: a
# run (or sweep job) saved without the key continues when the key has that value, and is refused otherwise.
ADDED_KEYS = {"evaluate_last": False, "last_layer_lr_scale": 1.0}
REPORTED = ("val/iou", "val/dice", "test/iou", "test/dice")  # a summary.json with these is a finished job's


@dataclass(frozen=True)
class Continuation:
    """What this run continues: nothing (a new run), a last.ckpt, or a sweep job that already finished."""

    checkpoint: Path | None = None
    saved: DictConfig | None = None  # the config `checkpoint` holds
    step: int | None = None  # the global step `checkpoint` was saved at: logged rows from it on are logged again
    finished: dict | None = None  # the finished job's summary.json: nothing to run

    @property
    def resuming(self) -> bool:
        return self.checkpoint is not None


def continuation(cfg: DictConfig) -> Continuation:
    """`resume=<dir>`: its last.ckpt, checked; a multirun job whose directory holds an earlier try: what it got to."""
    if cfg.get("resume"):
        return _resume(cfg)
    if in_multirun():
        return sweep_job(cfg)
    return Continuation()


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def resume_checkpoint(cfg: DictConfig) -> Path | None:
    """`resume=<run dir>`: its last.ckpt, after checking that this run continues it unchanged; else None."""
    return _resume(cfg).checkpoint if cfg.get("resume") else None


def _resume(cfg: DictConfig) -> Continuation:
    run_dir = Path(cfg.resume).expanduser().resolve()
    if Path(cfg.paths.output_dir).resolve() != run_dir:
        raise UserError(
            f"resume={cfg.resume}: this run writes to {cfg.paths.output_dir}, not the resumed directory;"
            " drop the hydra.run.dir / paths.output_dir override (resume sets it), and do not resume inside -m"
            " (a multirun continues its jobs itself when launched again with the same hydra.sweep.dir)"
        )
    last = run_dir / LAST_CHECKPOINT
    if not last.is_file():
        raise UserError(f"resume={cfg.resume}: {NO_CHECKPOINT}")
    checkpoint = read_checkpoint(last)
    saved = saved_config(checkpoint)
    check_unchanged(saved, resolved(cfg), where=f"resume={cfg.resume}", run_dir=run_dir)
    return Continuation(checkpoint=last, saved=saved, step=checkpoint["global_step"])


def check_unchanged(saved: DictConfig, current: DictConfig, *, where: str, run_dir: Path, sweep: bool = False) -> None:
    """Refuse, in one line, a config that differs from the run's (see the module's docstring for what may)."""
    allowed = tuple(current.get("resume_allow") or ())
    changed = config_changes(saved, current, allowed=allowed)
    if changed:
        absent = [c.split(":")[0] for c in changed if f": {ABSENT} ->" in c]
        why = (
            f"; the run's config has no {', '.join(absent)} (written by an older version of this code): if the"
            f" value given reproduces that run, resume with resume_allow=[{','.join(absent)}]"
            if absent
            else f"; to change a key knowingly, add resume_allow=[{changed[0].split(':')[0]}] (docs/resume.md)"
        )
        if sweep:
            why = f"; launch a different sweep into a new hydra.sweep.dir{why}"
        raise UserError(
            f"{where}: the config differs from the run's ({'; '.join(changed[:5])}); resume with the run's overrides"
            f" (see {run_dir / '.hydra' / 'overrides.yaml'}), changing only trainer.max_epochs{why}"
        )
    old_epochs, new_epochs = saved.trainer.max_epochs, current.trainer.max_epochs
    if old_epochs != new_epochs and _laid_over_the_budget(saved.get("scheduler")):
        raise UserError(
            f"{where}: trainer.max_epochs {old_epochs} -> {new_epochs}, but the learning-rate schedule was laid over"
            f" the first run's step budget; keep trainer.max_epochs={old_epochs}, or resume a run trained with"
            " scheduler=constant"
        )


def check_settled(saved: DictConfig, settled: dict, *, where: str) -> None:
    """Once the data has settled its `auto` values: they must be the first run's (the data did not change)."""
    old, new = _leaves(OmegaConf.to_container(saved)), _leaves(settled)
    changed = [
        f"{k}: {old.get(k, ABSENT)} -> {new[k]}"
        for k in sorted(new)
        if k.startswith("data.") and old.get(k, ABSENT) != new[k]
    ]
    if changed:
        raise UserError(
            f"{where}: the data settled other values than in the run ({'; '.join(changed[:5])}); the files under"
            " data.root changed since: restore them, or start a new run"
        )


def config_changes(saved: DictConfig, current: DictConfig, *, allowed: tuple[str, ...] = ()) -> list[str]:
    """`key: saved -> current` for every leaf that differs, except RESUMABLE_CHANGES, `allowed` and `auto`."""
    old, new = _leaves(OmegaConf.to_container(saved)), _leaves(OmegaConf.to_container(current))
    old, new = _relative(old, old.get("paths.output_dir")), _relative(new, new.get("paths.output_dir"))
    changed = []
    for key in sorted(old.keys() | new.keys()):
        if any(key == a or key.startswith(a + ".") for a in (*RESUMABLE_CHANGES, *allowed)):
            continue
        before, after = old.get(key, ADDED_KEYS.get(key, ABSENT)), new.get(key, ABSENT)
        if before != after and not (after == AUTO and before != ABSENT):  # `auto` settled on the saved value
            changed.append(f"{key}: {before} -> {after}")
    return changed


def resolved(cfg: DictConfig) -> DictConfig:
    """The composed config with its interpolations resolved, without Hydra's own node."""
    keys = [k for k in cfg if k != "hydra"]
    return OmegaConf.create(OmegaConf.to_container(OmegaConf.masked_copy(cfg, keys), resolve=True))


def check_before_start(config: DictConfig) -> None:
    """`resume_checkpoint`'s check from Hydra's on_run_start (rundir.CheckOutputDir): a refused resume stops before
    Hydra writes its `.hydra/resumed-<time>/` copy and opens train.log, so nothing in the run directory changes."""
    run_dir = Path(config.resume).expanduser().resolve()
    plain = OmegaConf.create(OmegaConf.to_container(OmegaConf.masked_copy(config, [k for k in config if k != "hydra"])))
    plain.paths.output_dir = str(run_dir)  # ${hydra:runtime.output_dir}: Hydra sets it only when the job starts
    check_unchanged(_saved(run_dir), resolved(plain), where=f"resume={config.resume}", run_dir=run_dir)


def _saved(run_dir: Path) -> DictConfig:
    return saved_config(read_checkpoint(run_dir / LAST_CHECKPOINT))


def _relative(leaves: dict[str, object], run_dir: object) -> dict[str, object]:
    """Paths under the run's own directory as `<run dir>/...`: a run directory moved or copied still compares."""
    if not isinstance(run_dir, str) or not run_dir:
        return leaves
    return {k: v.replace(run_dir, "<run dir>") if isinstance(v, str) else v for k, v in leaves.items()}


def _laid_over_the_budget(scheduler: DictConfig | None) -> bool:
    """Whether a schedule's shape depends on the step budget (all but `constant`): lengthening the run would break it."""
    return bool(scheduler) and not getattr(get_object(scheduler._target_), "independent_of_budget", False)


def _leaves(node: object, prefix: str = "") -> dict[str, object]:
    """{"trainer.max_epochs": 18, ...}: a nested dict flattened to dotted keys (lists are leaves)."""
    if not isinstance(node, dict) or not node:
        return {prefix: node}
    out: dict[str, object] = {}
    for key, value in node.items():
        out.update(_leaves(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def sweep_job(cfg: DictConfig) -> Continuation:
    """A multirun job whose directory an earlier launch of the same sweep used: skip it when it finished with this
    config, continue it from its last.ckpt when it was interrupted; a different job there is refused."""
    job_dir = Path(cfg.paths.output_dir)
    where = f"hydra.sweep.dir job {job_dir}"
    current = resolved(cfg)
    summary = _finished_summary(job_dir)
    last = job_dir / LAST_CHECKPOINT
    if summary is not None:
        settled = OmegaConf.load(job_dir / SETTLED)
        same_length = settled.trainer.max_epochs == current.trainer.max_epochs
        if same_length and not config_changes(settled, current, allowed=tuple(current.get("resume_allow") or ())):
            return Continuation(finished=summary)
        if not last.is_file():  # a finished job that kept no last.ckpt (lean callbacks): its result is not overwritten
            check_unchanged(settled, current, where=where, run_dir=job_dir, sweep=True)
    if not last.is_file():
        return Continuation()  # never saved: the job starts again (rundir.claim decides whether it may)
    checkpoint = read_checkpoint(last)
    saved = saved_config(checkpoint)
    check_unchanged(saved, current, where=where, run_dir=job_dir, sweep=True)
    return Continuation(checkpoint=last, saved=saved, step=checkpoint["global_step"])


def _finished_summary(job_dir: Path) -> dict | None:
    try:
        summary = json.loads((job_dir / SUMMARY).read_text())
    except (OSError, ValueError):
        return None  # not there, or cut short by the kill
    complete = all(isinstance(summary.get(key), float) for key in REPORTED) and (job_dir / SETTLED).is_file()
    return summary if complete else None


def learning_rate_ratio(saved: DictConfig | None, cfg: DictConfig) -> float:
    """new / old `optimizer.lr` when `resume_allow` lets it change; 1 otherwise."""
    allowed = cfg.get("resume_allow") or ()
    if saved is None or not any(a in ("optimizer", "optimizer.lr") for a in allowed):
        return 1.0
    return float(cfg.optimizer.lr) / float(saved.optimizer.lr)


class ScaleRestoredLearningRate(Callback):
    """Scales the learning rates restored from last.ckpt by `ratio`: `optimizer.lr` changed on resume.

    Lightning restores the optimizer's and the scheduler's state, lr included, so a new `optimizer.lr` would
    otherwise change nothing. Every lr the optimizer's groups hold (`lr`, and `initial_lr`, `max_lr`, `min_lr` of
    a schedule) and the schedule's base lrs are scaled: the rest of the schedule runs at the new level.
    """

    def __init__(self, ratio: float) -> None:
        self.ratio = ratio

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                for key in [k for k in group if k.endswith("lr") and isinstance(group[k], float)]:
                    group[key] *= self.ratio
        for config in trainer.lr_scheduler_configs:
            scheduler = config.scheduler
            if hasattr(scheduler, "base_lrs"):
                scheduler.base_lrs = [lr * self.ratio for lr in scheduler.base_lrs]
        log.info("resumed with optimizer.lr scaled by %g (resume_allow)", self.ratio)
