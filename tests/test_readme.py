"""Every command README shows still composes as written: its options and keys exist, its scripts are there.

Training them all would take hours; composing the config is what catches a renamed option, group or key,
which is how a README command goes stale.
"""

from __future__ import annotations

import shlex

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from seg.paths import PROJECT_DIR

CONFIG_OF_ENTRY_POINT = {
    "train.py": "train",
    "tune.py": "train",
    "eval.py": "eval",
    "predict.py": "predict",
    "scripts/export.py": "export",
}


def readme_commands() -> list[list[str]]:
    """The `python ...` lines of README's indented code blocks, as argument lists without the comment."""
    commands = []
    for line in (PROJECT_DIR / "README.md").read_text().splitlines():
        if line.startswith("    python "):
            commands.append(shlex.split(line.split("  #")[0], comments=False))
    return commands


def first_of_each_sweep(overrides: list[str]) -> list[str]:
    """`seed=0,1,2` becomes `seed=0`: one job of a `-m` sweep stands for all of them."""
    single = []
    for override in overrides:
        key, _, value = override.partition("=")
        if "," in value and not value.startswith(("[", "{")):
            value = value.split(",")[0]
        single.append(f"{key}={value}")
    return single


COMMANDS = readme_commands()


def test_readme_shows_commands():
    scripts = {command[1] for command in COMMANDS}
    assert {"train.py", "eval.py", "predict.py"} <= scripts, scripts


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c[1:]) for c in COMMANDS])
def test_readme_command_composes(command):
    script, arguments = command[1], [a for a in command[2:] if a != "-m"]
    assert (PROJECT_DIR / script).is_file(), f"README runs {script}, which does not exist"
    config_name = CONFIG_OF_ENTRY_POINT.get(script)
    if config_name is None:  # an argparse script: README shows a folder that only exists after a sweep
        return
    with initialize_config_dir(config_dir=str(PROJECT_DIR / "conf"), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=first_of_each_sweep(arguments))
    for override in first_of_each_sweep(arguments):
        key = override.partition("=")[0]
        if "." in key and not key.startswith(("hydra.", "+", "~")):
            assert OmegaConf.select(cfg, key) is not None, f"README sets {key}, which the composed config lacks"
