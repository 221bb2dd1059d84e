"""Every numeric and enumerated value of every conf/ option has a declared range (seg/run/config_check.py
`RANGES`), and a value outside it is refused with one line naming the key, the value and the range.

The walk covers each option of each config group composed as the CLI composes it, and each leaf of the result:
a new option or key that holds a number without a declared range fails here.
"""

from __future__ import annotations

import re

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from seg.errors import UserError
from seg.run.config_check import (
    LAUNCHER_RANGES,
    RANGES,
    allowed_for,
    check_launcher_values,
    check_value_ranges,
    check_values,
    launcher_leaves,
    leaves,
)
from tests.conftest import CONF_DIR, compose_config

GROUPS = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name != "hydra")
OPTIONS = [f"{group}={path.stem}" for group in GROUPS for path in sorted((CONF_DIR / group).glob("*.yaml"))]


def composed(*overrides: str):
    return compose_config(["paths.output_dir=/tmp/unused", *overrides])


def checked_leaves(cfg) -> list[tuple[str, object]]:
    """Numbers, and any other leaf a range is declared for (`data.cache: auto`, `trainer.accelerator`)."""
    return [
        (key, value)
        for key, value in leaves(cfg, references=True)
        if (isinstance(value, (int, float)) and not isinstance(value, bool)) or allowed_for(key) is not None
    ]


def test_every_config_group_is_walked():
    assert {"data", "model", "optimizer", "scheduler", "head", "trainer", "callbacks", "augment"} <= set(GROUPS)
    assert len(OPTIONS) >= 40


@pytest.fixture(scope="module")
def default_leaves() -> dict[str, object]:
    return dict(checked_leaves(composed()))


@pytest.mark.parametrize("option", ["(the defaults)", *OPTIONS])
def test_every_value_of_an_option_has_a_range_and_is_refused_outside_it(option, default_leaves):
    """Each leaf is set outside its range and must be refused, naming it; leaves an option leaves as the defaults
    have them are covered by "(the defaults)"."""
    cfg = composed() if option == "(the defaults)" else composed(option)
    check_values(cfg)  # the shipped values are inside their ranges
    found = checked_leaves(cfg)
    undeclared = [key for key, _ in found if allowed_for(key) is None]
    assert not undeclared, f"{option}: declare a range in seg/run/config_check.py RANGES for {undeclared}"
    own = [(key, value) for key, value in found if option == "(the defaults)" or default_leaves.get(key, ...) != value]
    raw = OmegaConf.to_container(cfg, resolve=False)
    for key, _ in own:
        allowed = allowed_for(key)
        bad = allowed.outside(cfg) if allowed.numbers else "banana"
        assert bad is not None, f"{key}: its declared range refuses no number"
        OmegaConf.update(cfg, key, bad, force_add=True)
        with pytest.raises(UserError) as refused:
            check_value_ranges(cfg)
        OmegaConf.update(cfg, key, OmegaConf.select(OmegaConf.create(raw), key), force_add=True)  # as shipped
        shown = repr(bad) if isinstance(bad, str) else str(bad)
        assert re.fullmatch(rf"{re.escape(key)}={re.escape(shown)}: must be .+", str(refused.value)), (
            key,
            str(refused.value),
        )


@pytest.mark.parametrize(
    ("overrides", "line"),
    [
        (["optimizer.lr=-1"], "optimizer.lr=-1: must be a number >= 0"),
        (["optimizer.weight_decay=-0.1"], "optimizer.weight_decay=-0.1: must be a number >= 0"),
        (["data=folder", "data.root=x", "data.split.val=1.5"], "data.split.val=1.5: must be a number in [0, 1)"),
        (["data=folder", "data.root=x", "data.split.test=abc"], "data.split.test='abc': must be a number in [0, 1)"),
        (["data=folder", "data.root=x", "data.batch_size=2.5"], "data.batch_size=2.5: must be a whole number >= 1"),
        (
            ["data=folder", "data.root=x", "data.pad_multiple=48"],
            "data.pad_multiple=48: must be a whole number >= 1, a multiple of 32 (2 ** model.encoder_depth)",
        ),
        (
            ["data=folder", "data.root=x", "model.encoder_depth=4", "data.pad_multiple=8"],
            "data.pad_multiple=8: must be a whole number >= 1, a multiple of 16 (2 ** model.encoder_depth)",
        ),
        (["data=folder", "data.root=x", "data.cache=maybe"], "data.cache='maybe': must be auto, true or false"),
        (["trainer.max_steps=0"], "trainer.max_steps=0: must be -1 or a whole number >= 1"),
        (
            ["trainer.limit_train_batches=1.5"],
            "trainer.limit_train_batches=1.5: must be null, a number in [0, 1] or a whole number >= 0",
        ),  # fmt: skip
        (["seed=-1"], "seed=-1: must be a whole number in [0, 4294967295]"),
        (["scheduler.pct_start=1"], "scheduler.pct_start=1: must be a number in (0, 1)"),
    ],
)
def test_the_line_names_the_key_the_value_and_the_range(overrides, line):
    with pytest.raises(UserError) as refused:
        check_value_ranges(composed(*overrides))
    assert str(refused.value) == line


def test_a_negative_learning_rate_is_refused_before_torch_sees_it():
    with pytest.raises(UserError, match=r"^optimizer\.lr=-1: must be a number >= 0$"):
        check_values(composed("optimizer.lr=-1"))


def test_a_value_pointing_at_another_key_is_reported_at_that_key():
    """`seed=-1` also reaches augment.seed and data.label_noise.seed through `${seed}`: the line names seed."""
    with pytest.raises(UserError, match=r"^seed=-1:"):
        check_values(composed("seed=-1", "experiment=label_noise"))


def test_model_encoder_depth_makes_pad_multiple_16_valid():
    check_values(composed("data=folder", "data.root=x", "model.encoder_depth=4", "data.pad_multiple=16"))


def test_every_declared_range_refuses_some_value():
    cfg = composed()
    for pattern, allowed in RANGES.items():
        assert allowed.numbers == () or allowed.outside(cfg) is not None, pattern


@pytest.mark.parametrize("name", ["eval", "predict", "export"])
def test_every_value_of_the_other_entry_points_has_a_range_and_is_refused_outside_it(name):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name=name)
    check_values(cfg)
    found = checked_leaves(cfg)
    assert [key for key, _ in found if allowed_for(key) is None] == []
    for key, value in found:
        bad = allowed_for(key).outside(cfg)
        OmegaConf.update(cfg, key, bad)
        with pytest.raises(UserError, match=rf"^{re.escape(key)}={re.escape(str(bad))}: must be "):
            check_value_ranges(cfg)
        OmegaConf.update(cfg, key, value)


LAUNCHERS = ["basic", *sorted(p.stem for p in (CONF_DIR / "hydra" / "launcher").glob("*.yaml")), "joblib"]


def with_launcher(launcher: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_every_value_of_a_launcher_and_the_sweeper_has_a_range_and_is_refused_outside_it(launcher):
    """The launchers' own options (the plugins' defaults and conf/hydra/launcher) are walked like conf/'s: a
    number, or a key declared as a choice, without a range in LAUNCHER_RANGES fails here."""
    cfg = with_launcher(launcher)
    check_launcher_values(cfg)  # as shipped: inside the ranges
    found = list(launcher_leaves(cfg))
    numbers = [key for key, value in found if isinstance(value, int | float) and not isinstance(value, bool)]
    assert not [key for key in numbers if allowed_for(key, LAUNCHER_RANGES) is None]
    declared = [(key, allowed_for(key, LAUNCHER_RANGES)) for key, _ in found]
    declared = [(key, allowed) for key, allowed in declared if allowed is not None]
    assert launcher == "basic" or len(declared) >= 7
    for key, allowed in declared:
        bad = allowed.outside(cfg) if allowed.numbers else "banana"
        shipped = OmegaConf.select(cfg, key)
        OmegaConf.update(cfg, key, bad, force_add=True)
        with pytest.raises(UserError) as refused:
            check_launcher_values(cfg)
        assert str(refused.value).startswith(f"{key}={bad!r}: must be " if isinstance(bad, str) else f"{key}={bad}:")
        OmegaConf.update(cfg, key, shipped, force_add=True)


def test_the_joblib_launcher_refuses_n_jobs_0_in_one_line():
    cfg = with_launcher("joblib")
    OmegaConf.update(cfg, "hydra.launcher.n_jobs", 0)
    with pytest.raises(UserError) as refused:
        check_launcher_values(cfg)
    assert str(refused.value) == "hydra.launcher.n_jobs=0: must be a whole number >= 1 or a whole number <= -1"
