"""The resolved config as a rich tree at start-up: which option each group took, what the command line overrode."""

from __future__ import annotations

import io
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.syntax import Syntax
from rich.text import Text
from rich.tree import Tree


@rank_zero_only
def print_config_tree(cfg: DictConfig, path: Path) -> None:
    """Print the tree and save it, as plain text, to `path` (e.g. <run dir>/config_tree.log)."""
    tree = config_tree(cfg, *hydra_choices_and_overrides())
    Console().print(tree)
    text = Console(file=io.StringIO(), width=120, color_system=None)
    text.print(tree)
    path.parent.mkdir(parents=True, exist_ok=True)  # rich pads lines to the width: drop the trailing blanks
    path.write_text("\n".join(line.rstrip() for line in text.file.getvalue().splitlines()) + "\n")


def hydra_choices_and_overrides() -> tuple[dict[str, str], list[str]]:
    """Hydra's record of the chosen group options and the command-line overrides; empty where no Hydra app runs
    (tests and notebooks that compose a config and call train() themselves)."""
    if not HydraConfig.initialized():
        return {}, []
    hydra = HydraConfig.get()
    choices = {
        group: "null" if option is None else str(option)
        for group, option in hydra.runtime.choices.items()
        if not group.startswith("hydra/")
    }
    return choices, list(hydra.overrides.task)


def config_tree(cfg: DictConfig, choices: dict[str, str], overrides: list[str]) -> Tree:
    """A branch per top-level key, labelled with its group's option (`head: tanh_mse`), holding the resolved YAML."""
    # Text, not str: rich would read "[baseline,tanh]" in a label as markup and drop it.
    tree = Tree("config", guide_style="dim")
    if overrides:
        tree.add(Text("overrides: " + " ".join(overrides), style="bold"))
    for key, value in cfg.items():
        label = f"{key}: {choices[key]}" if key in choices else str(key)
        if OmegaConf.is_config(value):
            yaml = OmegaConf.to_yaml(value, resolve=True).rstrip()
            tree.add(Text(label, style="bold")).add(Syntax(yaml, "yaml"))
        else:
            tree.add(Text(f"{label}: {value}"))
    # Groups without a key of their own: set to null (augment=null), or writing across the config (debug=fdr).
    for group in sorted(set(choices) - set(cfg)):
        tree.add(Text(f"{group}: {choices[group]}"))
    return tree
