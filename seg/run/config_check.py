"""Wrong config values, refused before anything is built: `trainer.max_epochs=abc` or `optimizer.lr=-1` is one line
naming the key, the value and what is allowed, not an error from deep inside Lightning or torch after the data was
checked and the model built.

Ranges: every numeric (or enumerated) key of the shipped configs has a declared range in `RANGES`, a table of key
pattern -> `Allowed`, checked on the resolved config whether or not the run uses the value (`data.split.val=1.5`
is refused also on a dataset with its own val/ folder). tests/test_config_ranges.py fails for a numeric key of any
conf/ option that the table does not cover.

Types: every `_target_` node's values are checked against the type hints of what it builds (e.g. `lightning.Trainer`
says `max_epochs: Optional[int]`, `precision: Literal[...]`). Only what the hints say for certain is refused:
plain types (int, float, bool, str, None), Literal choices, lists and mappings, and unions of these; a hint
that names a class (an `Accelerator`, a `Profiler`) admits any value but a string, which stands only for a
path or a device. Values that point at another key (`${data.in_channels}`) are checked at that key.
"""

from __future__ import annotations

import collections.abc
import functools
import inspect
import os
import re
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf

from seg.errors import UserError

HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}
SEQUENCES = {list, tuple, collections.abc.Sequence}
MAPPINGS = {dict, collections.abc.Mapping}


def check_values(cfg: DictConfig) -> None:
    """A UserError for the first value of the wrong type (against its `_target_`'s hints) or out of its range."""
    check_value_types(cfg)
    check_value_ranges(cfg)


def check_value_types(cfg: DictConfig, skip: tuple[str, ...] = ("hydra",)) -> None:
    """A UserError for the first value that the type hints of its `_target_` do not admit."""
    for key, node in _target_nodes(OmegaConf.to_container(cfg, resolve=False), ""):
        if key.split(".")[0] in skip:
            continue
        hints = _hints(node["_target_"])
        for name, value in node.items():
            if name in HYDRA_KEYS or name not in hints or _interpolated(value) or admits(hints[name], value):
                continue
            full_key = f"{key}.{name}" if key else name
            raise UserError(
                f"{full_key}={_shown(value)} is not valid: {name} of {_short(node['_target_'])} must be"
                f" {describe(hints[name])}"
            )


def _target_nodes(node: Any, key: str):
    """(dotted key, dict) of every dict with a `_target_`, depth first."""
    if isinstance(node, dict):
        if "_target_" in node:
            yield key, node
        for name, value in node.items():
            yield from _target_nodes(value, f"{key}.{name}" if key else str(name))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _target_nodes(value, f"{key}[{i}]")


def _interpolated(value: Any) -> bool:
    return isinstance(value, str) and "${" in value


@functools.cache
def _hints(target: str) -> dict[str, Any]:
    """Parameter name -> type hint of the target's constructor (or function); {} when they cannot be read."""
    try:
        built = get_object(target)
        function = built.__init__ if inspect.isclass(built) else built
        return typing.get_type_hints(function)
    except Exception:  # a target that cannot be imported fails in instantiate, with Hydra's own message
        return {}


def admits(hint: Any, value: Any) -> bool:
    """Whether `value` (plain Python, as in a resolved config) can be what `hint` describes; True when unsure."""
    origin = typing.get_origin(hint)
    if hint is Any or isinstance(hint, typing.TypeVar):
        return True
    if origin in (typing.Union, types.UnionType):
        return any(admits(arg, value) for arg in typing.get_args(hint))
    if origin is typing.Literal:
        return any(value == choice and type(value) is type(choice) for choice in typing.get_args(hint))
    if isinstance(value, dict) and "_target_" in value:
        return True  # a nested object, checked on its own
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint in SEQUENCES or origin in SEQUENCES:
        items = typing.get_args(hint)[:1] if origin is not tuple else ()
        return isinstance(value, (list, tuple)) and all(
            admits(items[0], v) for v in value if items and not _interpolated(v)
        )
    if hint in MAPPINGS or origin in MAPPINGS:
        return isinstance(value, dict)
    if isinstance(value, str) and inspect.isclass(hint):
        return issubclass(hint, (os.PathLike, torch.device))  # lr='fast' is not a Tensor
    return True  # a class, a callable: a config value may stand for it


def describe(hint: Any) -> str:
    """`an int or null`, `one of '16-mixed', 'bf16-mixed' or null`: what a user may write."""
    kinds: list[str] = []
    choices: list[str] = []
    for part in _flatten(hint):
        if typing.get_origin(part) is typing.Literal:
            choices += [repr(choice) for choice in typing.get_args(part)]
        else:
            kinds.append(_kind(part))
    if choices:
        kinds.insert(0, "one of " + ", ".join(dict.fromkeys(choices)))
    kinds = list(dict.fromkeys(kinds))
    return kinds[0] if len(kinds) == 1 else ", ".join(kinds[:-1]) + " or " + kinds[-1]


def _flatten(hint: Any) -> list[Any]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return [part for arg in typing.get_args(hint) for part in _flatten(arg)]
    return [hint]


def _kind(hint: Any) -> str:
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    if hint in names:
        return names[hint]
    origin = typing.get_origin(hint)
    if hint in SEQUENCES or origin in SEQUENCES:
        return "a list"
    if hint in MAPPINGS or origin in MAPPINGS:
        return "a mapping"
    return f"a {getattr(hint, '__name__', str(hint))}"


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _short(target: str) -> str:
    """`lightning.pytorch.trainer.trainer.Trainer` -> `Trainer`."""
    return target.rsplit(".", 1)[-1]


# --- ranges ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Number:
    """A number from `low` to `high` (an end None: unbounded; `open_low`/`open_high`: that end excluded); `whole`:
    an integer; `multiple_of(cfg)`: (m, why) when the value must be a multiple of m, e.g. the U-Net's stride."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    whole: bool = False
    multiple_of: Callable[[DictConfig], tuple[int, str] | None] | None = None

    def admits(self, value: float, cfg: DictConfig) -> bool:
        if self.whole and not isinstance(value, int):
            return False
        if self.low is not None and (value < self.low or (self.open_low and value == self.low)):
            return False
        if self.high is not None and (value > self.high or (self.open_high and value == self.high)):
            return False
        multiple = self.multiple_of(cfg) if self.multiple_of else None
        return multiple is None or value % multiple[0] == 0

    def describe(self, cfg: DictConfig) -> str:
        kind = "a whole number" if self.whole else "a number"
        low, high = _plain(self.low), _plain(self.high)
        if self.low is not None and self.high is not None:
            text = f"{kind} in {'(' if self.open_low else '['}{low}, {high}{')' if self.open_high else ']'}"
        elif self.low is not None:
            text = f"{kind} {'>' if self.open_low else '>='} {low}"
        elif self.high is not None:
            text = f"{kind} {'<' if self.open_high else '<='} {high}"
        else:
            text = kind
        multiple = self.multiple_of(cfg) if self.multiple_of else None
        return text + (f", a multiple of {multiple[0]} ({multiple[1]})" if multiple else "")

    def edges(self) -> list[float]:
        """Values just outside the range (for tests: each key's range must refuse something)."""
        step = 1 if self.whole else 0.5
        below = [self.low if self.open_low else self.low - step] if self.low is not None else []
        above = [self.high if self.open_high else self.high + step] if self.high is not None else []
        return below + above + ([self.low + 0.5] if self.whole and self.low is not None else [])


@dataclass(frozen=True)
class Allowed:
    """What a key may hold: a number of one of `numbers`, or exactly one of `words` ('auto', None, -1, True)."""

    numbers: tuple[Number, ...] = ()
    words: tuple[Any, ...] = ()

    def admits(self, value: Any, cfg: DictConfig) -> bool:
        if any(value == word and type(value) is type(word) for word in self.words):
            return True
        return _is_number(value) and any(number.admits(value, cfg) for number in self.numbers)

    def describe(self, cfg: DictConfig) -> str:
        parts = [_word(word) for word in self.words] + [number.describe(cfg) for number in self.numbers]
        return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]

    def outside(self, cfg: DictConfig) -> Any:
        """A number this key refuses, or None when it refuses no number (a declaration that checks nothing)."""
        candidates = [edge for number in self.numbers for edge in number.edges()] + [-1, -0.5, 0.5, 2**40]
        return next((value for value in candidates if not self.admits(value, cfg)), None)


def whole(low: int | None = None, high: int | None = None, *words: Any, multiple_of=None) -> Allowed:
    return Allowed((Number(low, high, whole=True, multiple_of=multiple_of),), words)


def number(low: float | None = None, high: float | None = None, *words: Any, **ends: bool) -> Allowed:
    return Allowed((Number(low, high, **ends),), words)


def fraction_or_count(*words: Any) -> Allowed:
    """Lightning's `limit_*_batches`, `overfit_batches`: a fraction of the batches (float) or a count (int)."""
    return Allowed((Number(0.0, 1.0), Number(0, whole=True)), words)


def word(*words: Any) -> Allowed:
    return Allowed((), words)


def unet_stride(cfg: DictConfig) -> tuple[int, str] | None:
    """The U-Net halves its input `model.encoder_depth` times: padded sizes are multiples of 2 ** depth."""
    depth = OmegaConf.select(cfg, "model.encoder_depth", default=None, throw_on_resolution_failure=False)
    if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= 5:
        return None  # no model in this config (predict.py's), or a bad depth, refused at its own key
    return 2**depth, "2 ** model.encoder_depth"


SEED = whole(0, 2**32 - 1)  # numpy and Lightning's seed_everything take unsigned 32-bit seeds
PROBABILITY = number(0.0, 1.0)
SIZE = whole(1)

# Key pattern (`*` matches any text of the dotted key, list items as `[]`) -> what it may hold; the first match counts, so a
# specific pattern goes above a general one. A key of conf/ that holds a number must match one (tests enforce it).
RANGES: dict[str, Allowed] = {
    # train.yaml
    "seed": SEED,
    "tune.sampler.seed": whole(0, 2**32 - 1, None),  # null: each worker its own stream (docs/sweeps.md)
    "tune.n_trials": SIZE,
    "tune.heartbeat_seconds": whole(1, None, None),
    "tune.trial": whole(0, None, None),
    "tune.*.n_startup_trials": whole(0),
    "tune.pruner.n_warmup_steps": whole(0),
    "tune.params.optimizer.*.low": number(0.0),  # learning rates and weight decays: never negative
    "tune.params.optimizer.*.high": number(0.0),
    "*.seed": SEED,
    "lr_scale": number(0.0, open_low=True),
    "last_layer_lr_scale": number(0.0, open_low=True),
    "evaluate_last": word(True, False),
    # optimizer, scheduler
    "optimizer.lr": number(0.0),
    "optimizer.weight_decay": number(0.0),
    "optimizer.momentum": number(0.0, 1.0, open_high=True),
    "optimizer.betas[]": number(0.0, 1.0, open_high=True),
    "optimizer.eps": number(0.0, open_low=True),
    "scheduler.pct_start": number(0.0, 1.0, open_low=True, open_high=True),
    "scheduler.eta_min": number(0.0),
    # head
    "head.bce_weight": number(0.0),
    "head.smooth": number(0.0),
    "head.gamma": number(0.0),
    "head.alpha": number(0.0, 1.0, None),
    "head.pos_weight": number(0.0, None, "auto", open_low=True),  # auto: (1 - f) / f of the training split
    "head.logit_scale": number(0.0, open_low=True),  # a negative scale would swap the classes
    "head.loss_scale": number(0.0, open_low=True),
    # model
    "model.encoder_depth": whole(1, 5),  # smp's U-Net encoders have five stages
    "model.decoder_channels[]": SIZE,
    "model.last_layer_scale": number(0.0, open_low=True),  # the atlas's control: the last layer's init times this
    # data
    "data.batch_size": SIZE,
    "data.eval_batch_size": SIZE,
    "data.num_workers": whole(0, None, "auto"),
    "data.in_channels": whole(1, None, "auto"),
    "data.mean": word("auto"),
    "data.mean[]": number(0.0, 1.0),  # pixel values scaled to [0, 1]
    "data.std": word("auto"),
    "data.std[]": number(0.0, open_low=True),
    "data.cache": word("auto", True, False),
    "data.mask.threshold": number(0.0, None, None, open_low=True),
    "data.mask.*[]": whole(0),  # pixel values of the mask files
    "data.split.val": number(0.0, 1.0, open_high=True),  # a fraction of the images; the rest must train
    "data.split.test": number(0.0, 1.0, open_high=True),
    "data.pad_multiple": whole(1, multiple_of=unet_stride),
    "data.train_resize.height": SIZE,
    "data.train_resize.width": SIZE,
    "data.train_resize.fill_mask": whole(0, 255),
    "data.train_resize.fill": number(0.0, 255.0),
    "data.train_resize.p": PROBABILITY,
    "data.label_noise.level": PROBABILITY,
    "data.label_noise.jitter": PROBABILITY,
    "data.label_noise.drop": PROBABILITY,
    "data.label_noise.flip": PROBABILITY,
    "data.label_noise.max_shift": SIZE,
    "data.source.counts.*": SIZE,
    "data.source.size": whole(8),
    "data.source.n_*[]": whole(0),
    "data.source.curve_width[]": SIZE,
    "data.source.small_radius[]": SIZE,
    "data.source.stripe_period[]": number(0.0, open_low=True),
    "data.source.edge_softness": number(0.0),
    "data.source.blur": number(0.0),
    "data.source.noise": number(0.0),
    "data.source.illumination": number(0.0),
    "data.source.*offset*": number(0.0, 1.0),
    "data.source.stripe_amplitude[]": number(0.0, 1.0),
    # augment
    "augment.*.p": PROBABILITY,
    "augment.horizontal": PROBABILITY,  # augment=device_flips: the chance of each flip or turn per image
    "augment.vertical": PROBABILITY,
    "augment.rotate90": PROBABILITY,
    # callbacks
    "callbacks.*.every_n_steps": SIZE,
    "callbacks.*.every_n_train_steps": whole(1, None, None),
    "callbacks.*.every_n_epochs": SIZE,
    "callbacks.*.check_every_n_steps": SIZE,
    "callbacks.*.n_bins": SIZE,
    "callbacks.*.stuck_below": number(0.0, open_low=True),
    "callbacks.*.save_top_k": whole(0, None, -1),  # -1: keep every checkpoint
    "callbacks.*.mode": word("min", "max"),
    "callbacks.*.num_images": SIZE,
    "callbacks.*.tile_size": SIZE,
    "callbacks.*.max_pictures": whole(0),
    "callbacks.*.patience": whole(0),
    "callbacks.*.width": SIZE,  # the boundary band of boundary IoU, in px
    "callbacks.*.min_delta": number(0.0),
    # trainer (lightning.Trainer's own ranges)
    "trainer.accelerator": word("auto", "cpu", "gpu", "cuda", "mps", "tpu", "hpu"),
    "trainer.devices": whole(1, None, -1, "auto"),  # -1: every device; a list names them
    "trainer.devices[]": whole(0),
    "trainer.num_nodes": SIZE,
    "trainer.max_epochs": whole(0, None, -1, None),  # -1: no limit
    "trainer.min_epochs": whole(0, None, None),
    "trainer.max_steps": whole(1, None, -1),  # -1: no limit
    "trainer.min_steps": whole(0, None, None),
    "trainer.limit_*_batches": fraction_or_count(None),
    "trainer.overfit_batches": fraction_or_count(),
    "trainer.val_check_interval": Allowed((Number(0.0, 1.0, open_low=True), Number(1, whole=True)), (None,)),
    "trainer.check_val_every_n_epoch": whole(1, None, None),
    "trainer.log_every_n_steps": SIZE,
    "trainer.accumulate_grad_batches": SIZE,
    "trainer.gradient_clip_val": number(0.0, None, None),
    "trainer.num_sanity_val_steps": whole(0, None, -1),  # -1: the whole validation set
    "trainer.fast_dev_run": whole(0, None, True, False),  # true: one batch; N: N batches
    # predict.yaml, eval.yaml, export.yaml
    "batch_size": SIZE,
    "threshold": number(0.0, 1.0, "val"),  # val: the IoU-best threshold on the validation split
    "min_component": whole(0),  # 0: keep every component
    # (multiples of the checkpoint's stride: checked where the checkpoint is read, seg/inference/)
    "tile": whole(1, None, None),
    "overlap": number(0.0),
    "size": SIZE,
    "tolerance": number(0.0, open_low=True),
    "formats.*.opset": whole(7),
}
SKIPPED = ("hydra", "paths")  # Hydra's own settings (the launcher's are LAUNCHER_RANGES); where the run writes

# The launchers and the sweeper Hydra uses (conf/hydra/launcher, the plugins' own options). They act before any job
# starts, so they are checked when a multirun starts (seg.run.rundir.CheckOutputDir.on_multirun_start): a wrong
# n_jobs or SLURM time is one line, not a traceback from joblib or a job the cluster rejects hours later.
SOME = whole(1, None, None)  # a count, or null: the plugin's (or the cluster's) default
LAUNCHER_RANGES: dict[str, Allowed] = {
    "hydra.sweeper.max_batch_size": SOME,
    # hydra-joblib-launcher: joblib.Parallel's arguments (negative n_jobs: all CPUs but |n_jobs| - 1)
    "hydra.launcher.n_jobs": Allowed((Number(1, whole=True), Number(None, -1, whole=True))),
    "hydra.launcher.verbose": whole(0),
    "hydra.launcher.timeout": number(0.0, None, None, open_low=True),
    "hydra.launcher.backend": word(None, "loky", "multiprocessing", "threading"),
    "hydra.launcher.prefer": word(None, "processes", "threads"),
    "hydra.launcher.mmap_mode": word(None, "r+", "r", "w+", "c"),
    # hydra-submitit-launcher (SLURM): sbatch's options
    "hydra.launcher.timeout_min": whole(1),
    "hydra.launcher.cpus_per_task": SOME,
    "hydra.launcher.gpus_per_node": whole(0, None, None),  # 0: a CPU job (trainer.devices on the CPU)
    "hydra.launcher.tasks_per_node": whole(1),
    "hydra.launcher.mem_gb": SOME,
    "hydra.launcher.nodes": whole(1),
    "hydra.launcher.cpus_per_gpu": SOME,
    "hydra.launcher.gpus_per_task": SOME,
    "hydra.launcher.signal_delay_s": whole(0),
    "hydra.launcher.max_num_timeout": whole(0),
    "hydra.launcher.array_parallelism": whole(1),
}
REFERENCE = re.compile(r"\$\{[\w.\[\]]+\}")  # `${seed}`: another key's value, not a resolver's result


def check_value_ranges(cfg: DictConfig, ranges: dict[str, Allowed] = RANGES) -> None:
    """A UserError for the first value outside what `ranges` declares for its key, used by this run or not."""
    for key, value in leaves(cfg):
        allowed = _declared(key) if ranges is RANGES else allowed_for(key, ranges)
        if allowed is not None and not allowed.admits(value, cfg):
            raise UserError(f"{key}={_shown(value)}: must be {allowed.describe(cfg)}")


def check_launcher_values(config: DictConfig) -> None:
    """A UserError for the first value of `hydra.launcher` or `hydra.sweeper` outside LAUNCHER_RANGES."""
    for key, value in launcher_leaves(config):
        allowed = allowed_for(key, LAUNCHER_RANGES)
        if allowed is not None and not allowed.admits(value, config):
            raise UserError(f"{key}={_shown(value)}: must be {allowed.describe(config)}")


def launcher_leaves(config: DictConfig) -> Iterator[tuple[str, Any]]:
    """(dotted key, resolved value) of every leaf of `hydra.launcher` and `hydra.sweeper`; `gpus_per_node:
    ${trainer.devices}` is checked here, as the launcher will read it."""
    for node in ("launcher", "sweeper"):
        branch = OmegaConf.select(config, f"hydra.{node}")
        if branch is not None:
            raw = OmegaConf.to_container(branch, resolve=False)
            yield from _leaves(branch, raw, f"hydra.{node}", references=True)


def allowed_for(key: str, ranges: dict[str, Allowed] = RANGES) -> Allowed | None:
    pattern = _pattern(key)
    return next((allowed for glob, allowed in ranges.items() if _glob(glob).fullmatch(pattern)), None)


_declared = functools.cache(allowed_for)  # RANGES is fixed: each key is looked up once per process


def leaves(cfg: DictConfig, *, references: bool = False) -> Iterator[tuple[str, Any]]:
    """(dotted key, resolved value) of every leaf, depth first. A leaf that only points at another key
    (`augment.seed: ${seed}`) is checked at that key, so the line names what the user set; one that cannot be
    resolved here (`???`, an interpolation into Hydra's runtime) is left to the code that reads it.
    `references`: those leaves too (a test of the declarations walks every leaf)."""
    yield from _leaves(cfg, OmegaConf.to_container(cfg, resolve=False), "", references)


def _leaves(node: Any, raw: Any, key: str, references: bool) -> Iterator[tuple[str, Any]]:
    if isinstance(node, DictConfig):
        children = [(name, f"{key}.{name}" if key else str(name)) for name in node]
        children = [(name, full) for name, full in children if full not in SKIPPED and name not in HYDRA_KEYS]
    elif isinstance(node, ListConfig):
        children = [(i, f"{key}[{i}]") for i in range(len(node))]
    else:
        yield key, node
        return
    for name, full in children:
        if not references and isinstance(raw[name], str) and REFERENCE.fullmatch(raw[name]):
            continue
        try:
            value = node[name]
        except Exception:  # MissingMandatoryValue, an interpolation resolver that needs Hydra's runtime
            continue
        if isinstance(raw[name], str) and isinstance(value, DictConfig | ListConfig):
            continue  # a whole node taken from another key (`pruner: ${tune.pruner}`): checked at that key
        yield from _leaves(value, raw[name], full, references)


def _pattern(key: str) -> str:
    """`model.decoder_channels[2]` -> `model.decoder_channels[]`: list items share their list's range."""
    return re.sub(r"\[\d+\]", "[]", key)


@functools.cache
def _glob(pattern: str) -> re.Pattern:
    """A RANGES key as a regex: `*` is any text, everything else literal (`[]` too, unlike fnmatch's)."""
    return re.compile(".*".join(map(re.escape, pattern.split("*"))))


def _plain(value: float | None) -> str:
    """0.0 -> `0`, 0.25 -> `0.25`: the way a user types it."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _word(value: Any) -> str:
    return {None: "null", True: "true", False: "false"}.get(value, str(value)) if not _is_number(value) else str(value)
