"""A run's console: each library line once, no per-checkpoint chatter, and the warnings a user must see."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from tests.conftest import run_cli, write_tiny_folder_dataset

TREE = tuple("│├└┏┃┡└┗━╇") + (" ",)  # the config tree and the summary table: printed once by design


def console_lines(text: str) -> list[str]:
    """Non-empty lines outside the config tree and table, without Hydra's `[time][logger][LEVEL] - ` prefix."""
    lines = [re.sub(r"^\[[^]]*\]\[[^]]*\]\[[A-Z]+\] - ", "", line) for line in text.splitlines()]
    return [line for line in lines if line.strip() and not line.startswith(TREE)]


@pytest.mark.slow  # a real CLI process (imports alone take seconds); the in-process tests cover the logic
def test_a_short_run_says_each_thing_once_and_keeps_the_warnings(tmp_path):
    root = write_tiny_folder_dataset(tmp_path / "data", counts=(8, 2, 2))
    (root / "train" / "images" / "labels.txt").write_text("drawn by A.")  # the data warning a user must see
    result = run_cli(
        "data=folder",
        f"data.root={root}",
        "data.num_workers=0",
        "data.batch_size=2",
        "trainer.max_epochs=2",
        f"hydra.run.dir={tmp_path / 'run'}",
        "~callbacks.progress_bar",
        "+trainer.enable_progress_bar=false",
        "callbacks.resumable_checkpoint.every_n_train_steps=2",  # mid-epoch saves, as a long run makes every 100 steps
        cwd=tmp_path,
        PYTHONWARNINGS="default",  # the warnings a user sees (run_cli hides them by default)
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = console_lines(result.stdout + result.stderr)
    assert not [line for line in lines if "weights_only" in line]
    repeated = {line: n for line, n in Counter(lines).items() if n > 1}
    assert repeated == {}, repeated
    assert sum("Restoring states from the checkpoint path at" in line for line in lines) == 1  # validate, then test
    assert (
        sum(line.startswith("GPU available: ") for line in lines) == 1
    )  # Lightning is not silenced, only deduplicated
    assert sum("1 file(s) of other types not read, e.g. labels.txt" in line for line in lines) == 1
