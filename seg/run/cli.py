"""Turning a user's mistake into one line on stderr and exit status 2, instead of a library traceback."""

from __future__ import annotations

import difflib
import logging
import os
import sys
import warnings
from contextlib import contextmanager

from hydra.errors import (
    ConfigCompositionException,
    InstantiationException,
    MissingConfigException,
    OverrideParseException,
)
from omegaconf import DictConfig
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, MissingMandatoryValue

from seg.adapters import NULL_GROUP, RANK_ZERO_LOGGERS, RESUME_WARNINGS, TIP, WEIGHTS_ONLY, hydra_raises_errors
from seg.errors import Interrupted, UserError
from seg.paths import PROJECT_DIR


@contextmanager
def report_user_errors():
    try:
        yield
    except Interrupted as stop:  # not a mistake: a signal, with a checkpoint saved to resume from
        print(f"stopped: {stop}", file=sys.stderr)
        sys.exit(128 + stop.signum)
    except UserError as error:
        _fail(own_line(error))
    except InstantiationException as error:
        # Hydra wraps the constructor's TypeError, e.g. an unknown Trainer argument; its text names the
        # target and the config key ("full_key: trainer"), which is what the user has to change.
        cause = error.__cause__ or error
        if isinstance(cause, UserError):
            _fail(str(cause))
        _fail(_one_line(error))
    except MissingMandatoryValue as error:  # a `???` in the config, e.g. data=folder without data.root
        key = error.full_key or "a required key"
        _fail(f"{key} is required here: pass {key}=<value> on the command line")


CONF_DIR = PROJECT_DIR / "conf"


@contextmanager
def report_config_errors():
    """Around an entry point's Hydra `main()`: a mistake in the command line (an unknown option, key or
    override syntax) is one `error:` line and exit status 2, like every other mistake.

    Hydra prints these itself, over several lines ending in a hint about HYDRA_FULL_ERROR; inside
    `hydra_raises_errors` it raises them instead, and they are caught here. A user who sets HYDRA_FULL_ERROR=1 gets
    Hydra's full report.
    """
    with hydra_raises_errors() as raising:
        if not raising:
            yield
            return
        try:
            yield
        except (ConfigCompositionException, OverrideParseException) as error:
            _fail(config_error_line(error))
        except ValueError as error:  # Hydra's ValueError for `group=null` names neither the group nor the fix
            if not str(error).startswith(NULL_GROUP):
                raise
            _fail(null_group_line(sys.argv[1:]))


def null_group_line(args: list[str]) -> str:
    """`scheduler=null` on the command line: a config group takes one of its options' names."""
    given = next((arg for arg in args if arg.endswith("=null") and (CONF_DIR / arg[: -len("=null")]).is_dir()), None)
    if given is None:  # set to null by a config file (an experiment's `override /group: null`)
        return "a config group was set to null; give one of its options' names, or remove the group with ~GROUP"
    group = given[: -len("=null")]
    options = sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml"))
    return f"{given}: a config group takes one of its options, not null; choose one of {', '.join(options)}, or drop it with ~{group}"


def config_error_line(error: Exception) -> str:
    """What is wrong on the command line and what to write instead, in one line."""
    if isinstance(error, MissingConfigException) and error.missing_cfg_file and error.options:
        group, _, name = error.missing_cfg_file.rpartition("/")
        return f"{group}={name}: no such option in conf/{group}/; choose one of {', '.join(error.options)}"
    if isinstance(error, OverrideParseException):
        return (
            f"{error.override}: not a valid override ({error.message.splitlines()[0]}); quote a value with special"
            " characters (key='a,b'), see https://hydra.cc/docs/advanced/override_grammar/basic"
        )
    cause = error.__cause__
    override = (
        override_of(cause.full_key, sys.argv[1:]) if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) else None
    )
    if override:
        parent = cause.parent_node
        known = [str(key) for key in parent] if isinstance(parent, DictConfig) else []
        where = cause.full_key.rpartition(".")[0] or "the config"
        close = difflib.get_close_matches(str(cause.key), known, n=1)
        hint = f"did you mean {_dotted(where, close[0])}?" if close else "check the spelling"
        script = os.path.basename(sys.argv[0]) or "train.py"
        return (
            f"{override}: {where} has no key {cause.key!r}; {hint} (`python {script} --cfg job` prints"
            f" every key), or add a new key with +{override}"
        )
    return _one_line(error)


def override_of(key: str, args: list[str]) -> str | None:
    """The command-line override that sets `key` or a key under it (`trainer.nope=1` for trainer.nope)."""
    for arg in args:
        name = arg.partition("=")[0].lstrip("~+")
        if "=" in arg and (name == key or name.startswith(key + ".")):
            return arg
    return None


def _dotted(parent: str, key: str) -> str:
    return key if parent == "the config" else f"{parent}.{key}"


def _one_line(error: BaseException) -> str:
    """The error's text and its cause's, whitespace collapsed: Hydra and OmegaConf spread them over lines."""
    text = str(error)
    if error.__cause__ is not None and str(error.__cause__) not in text:
        text += f" ({error.__cause__})"
    return " ".join(text.split())


def own_line(error: UserError) -> str:
    """The error's own message. Raised in a DataLoader worker process, it arrives rebuilt by torch from a text
    that wraps it: "Caught DataError in DataLoader worker process 0.\nOriginal Traceback …\nseg.errors.DataError:
    <message>"; the message is what follows the last line naming the error's class."""
    text = str(error)
    named = f"\n{type(error).__module__}.{type(error).__qualname__}: "
    return text.rsplit(named, 1)[1].strip() if text.startswith("Caught ") and named in text else text


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(TIP)


class _DropRepeats(logging.Filter):
    """Keeps the first of identical INFO lines: Lightning says "Restoring states from the checkpoint path at
    …best.ckpt" again for test after validate, and its start-up lines again for every Trainer a process builds."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True  # a warning said twice may have two causes: keep it
        message = record.getMessage()
        if message in self.seen:
            return False
        self.seen.add(message)
        return True


class _DropMessage(logging.Filter):
    def __init__(self, start: str) -> None:
        super().__init__()
        self.start = start

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.start)


_drop_tips, _drop_repeats, _drop_weights_only = _DropTips(), _DropRepeats(), _DropMessage(WEIGHTS_ONLY[1])


def quiet_library_noise() -> None:
    """Drop chatter that asks nothing of the user: Lightning's advertising tips, its INFO lines said again (kept
    once per run), the `weights_only` line at every checkpoint save, and a deprecation warning Lightning raises
    from its own code (lightning 2.6 with torch 2.14). Lightning's warnings still show. Called at the start of
    each run (each job of a multirun): the lines are shown once per run.
    """
    _drop_repeats.seen.clear()
    for name in RANK_ZERO_LOGGERS:
        logging.getLogger(name).addFilter(_drop_tips)  # the same filter object is added only once
        logging.getLogger(name).addFilter(_drop_repeats)
    logging.getLogger(WEIGHTS_ONLY[0]).addFilter(_drop_weights_only)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    for message in RESUME_WARNINGS:  # expected on a resume (seg/run/resume.py), and wrong there
        warnings.filterwarnings("ignore", message=message)
