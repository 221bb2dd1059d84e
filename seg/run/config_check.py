"""Wrongly typed config values, refused before anything is built: `trainer.max_epochs=abc` is one line naming
the key, not a TypeError from deep inside Lightning after the data was checked and the model built.

Every `_target_` node's values are checked against the type hints of what it builds (e.g. `lightning.Trainer`
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
import types
import typing
from typing import Any

import torch
from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf

from seg.errors import UserError

HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}
SEQUENCES = {list, tuple, collections.abc.Sequence}
MAPPINGS = {dict, collections.abc.Mapping}


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
