"""The bad-input catalogue (docs/bad-input.md): each mistake a user can make on the command line or in their files
is refused with one `error:` line naming the file, key or value and what to do; exit status 2, no traceback, and
the user's files untouched.

Each row is one entry: how the bad input is made, the command line, and the line expected. Every row runs
through the entry point's `__main__` (Hydra's argument parsing included) in this process, which takes well under
a second for most: they fail in config composition or the validation pass, before anything trains. The
command-line rows also run as a real process; the slow marker runs every other row that way too.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import runpy
import shutil
import subprocess
import sys
from collections import namedtuple
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import seg.run.train  # noqa: F401  Lightning's log handlers bind to stderr now, not to one test's capture of it
from seg.data.datamodule import FolderDataModule
from seg.model.module import CONFIG_KEY
from seg.paths import PROJECT_DIR
from seg.run import checkpoint_io, rundir
from tests.conftest import run_cli, write_tiny_folder_dataset

TRAIN_ARGS = (  # the tiny folder dataset of conftest, one epoch, batches of 2, no loader processes
    "data=folder",
    "data.root={data}",
    "data.num_workers=0",
    "data.batch_size=2",
    "trainer.max_epochs=1",
    "hydra.run.dir={run}",
    "~callbacks.progress_bar",
)


@dataclass(frozen=True)
class Case:
    id: str
    line: str  # regex that the one `error:` line must match (searched, after "error: ")
    args: tuple[str, ...] = ()  # after TRAIN_ARGS for train.py; {data}, {user}, {run} are filled in
    make: Callable[[Path], object] | None = None  # makes the bad input in {user} (holding the dataset in data/)
    script: str = "train.py"
    patch: Callable[[pytest.MonkeyPatch], None] | None = None  # in this process only
    env: dict[str, str] = field(default_factory=dict)  # in a real process: what `patch` does
    command_line: bool = False  # a mistake on the command line: also run as a real process by default
    changes: tuple[str, ...] = ()  # files under {user} the fault itself changes during the run (not the code's doing)


def write(path: Path, content: bytes) -> None:
    path.write_bytes(content)


def image(path: Path, array: np.ndarray) -> None:
    cv2.imwrite(str(path), array)


def replace(old: Path, new: Path, content: bytes) -> None:
    old.unlink()
    new.write_bytes(content)


def truncated_jpeg(data: Path) -> None:
    encoded = cv2.imencode(".jpg", np.full((32, 32), 128, np.uint8))[1].tobytes()
    replace(data / "train/images/img_003.png", data / "train/images/img_003.jpg", encoded[: len(encoded) // 2])


def another_runs_directory(user: Path) -> None:
    (user / "old_run").mkdir()
    (user / "old_run" / rundir.MARKER).write_text('{"started": "2026-11-01 09:00:00", "host": "gpu1", "pid": 7}')


def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def full_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(rundir.shutil, "disk_usage", lambda path: usage(2**30, 2**30 - 2**20, 2**20))


def disk_full_at_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills up while the first checkpoint is written: torch.save writes part of it, then ENOSPC."""

    def save(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"PK\x03\x04 half a checkpoint")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(checkpoint_io.torch, "save", save)


def after_the_validation_pass(change: Callable[[Path], None]) -> Callable[[pytest.MonkeyPatch], None]:
    """A data file changes between the validation pass (the datamodule's setup) and training reading it."""

    def patch(monkeypatch: pytest.MonkeyPatch) -> None:
        setup = FolderDataModule.setup

        def setup_then_change(self, stage=None):
            setup(self, stage)
            change(self.root)

        monkeypatch.setattr(FolderDataModule, "setup", setup_then_change)

    return patch


def a_checkpoint(path: Path, *, config: bool = True, truncate: bool = False) -> None:
    """A checkpoint-like torch file: with this project's config key or not (another tool's), whole or cut short."""
    path.parent.mkdir(parents=True, exist_ok=True)
    content = {"state_dict": {"net.weight": torch.zeros(4096)}, "epoch": 3}
    torch.save({**content, CONFIG_KEY: {"seed": 0}} if config else content, path)
    if truncate:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def a_run_with(checkpoint: Callable[[Path], None]) -> Callable[[Path], None]:
    """A run directory beside the user's folder (`{user}/../old`) whose last.ckpt is made by `checkpoint`."""

    def make(user: Path) -> None:
        another_runs_directory(user.parent)
        (user.parent / "old_run").rename(user.parent / "old")
        checkpoint(user.parent / "old" / "checkpoints" / "last.ckpt")

    return make


def grey(value: int) -> np.ndarray:
    return np.full((32, 32), value, np.uint8)


CATALOGUE = [
    # --- the user's files ---------------------------------------------------------------------------------
    Case(
        "mask values outside the policy",
        r"train/masks/img_001\.png: mask values \{7\} are outside the mask policy .* list them in data\.mask\.",
        make=lambda u: image(u / "data/train/masks/img_001.png", grey(7)),
    ),
    Case(
        "colour mask",
        r"train/masks/img_002\.png: mask has 3 different colour channels; masks must be single-channel",
        make=lambda u: image(u / "data/train/masks/img_002.png", np.dstack([grey(0), grey(255), grey(0)])),
    ),
    Case(
        "mixed channel counts",
        r"test/images/img_200\.png: has 3 channel\(s\) but 9 other images have 1 .*convert them",
        make=lambda u: image(u / "data/test/images/img_200.png", np.dstack([grey(90)] * 2 + [grey(10)])),
    ),
    Case(
        "channels the model does not take",
        r"img_000\.png: has 1 channel\(s\) but the model takes 3; set data\.in_channels=1 \(or auto\)",
        args=("data.in_channels=3",),
    ),
    Case(
        "duplicate stems",
        r"train/images/img_001\.png: two files share the stem 'img_001' \(also img_001\.jpg\); keep one",
        make=lambda u: image(u / "data/train/images/img_001.jpg", grey(90)),
    ),
    Case(
        "empty image file",
        r"train/images/img_002\.png: file is empty \(0 bytes\), not an image; replace or remove the file",
        make=lambda u: write(u / "data/train/images/img_002.png", b""),
    ),
    Case(
        "empty mask file",
        r"val/masks/img_101\.png: file is empty \(0 bytes\), not a mask; replace or remove the file",
        make=lambda u: write(u / "data/val/masks/img_101.png", b""),
    ),
    Case(
        "text file named .png",
        r"train/images/img_004\.png: cannot be decoded as an image \(unreadable, truncated or not an image\)",
        make=lambda u: write(u / "data/train/images/img_004.png", b"Annotated by A. on Monday\n"),
    ),
    Case(
        "web page saved as .jpg",
        r"train/images/img_005\.jpg: cannot be decoded as an image .*replace or remove the file",
        make=lambda u: replace(
            u / "data/train/images/img_005.png", u / "data/train/images/img_005.jpg", b"<!DOCTYPE html><html>"
        ),
    ),
    Case(
        "truncated JPEG",
        r"train/images/img_003\.jpg: JPEG file is truncated \(no end-of-image marker\); replace or remove",
        make=lambda u: truncated_jpeg(u / "data"),
    ),
    Case(
        "mask of another size",
        r"val/masks/img_100\.png: mask is 32x10 but its image img_100\.png is 32x32; masks must match",
        make=lambda u: image(u / "data/val/masks/img_100.png", np.zeros((10, 32), np.uint8)),
    ),
    Case(
        "image without a mask",
        r"train/images/img_001\.png: no mask named img_001\.\* in .*; add the masks or remove the images",
        make=lambda u: (u / "data/train/masks/img_001.png").unlink(),
    ),
    Case(
        "missing masks folder",
        r"train/masks: folder not found; images/ and masks/ go side by side in .*train",
        make=lambda u: shutil.rmtree(u / "data/train/masks"),
    ),
    Case(
        "data.root is a file",
        r"mydata\.zip: data\.root is a file, not a folder; pass the folder that holds images/ and masks/",
        args=("data.root={user}/mydata.zip",),
        make=lambda u: write(u / "mydata.zip", b"PK\x05\x06" + bytes(18)),
    ),
    Case(
        "data.root not given",
        r"^data\.root is required here: pass data\.root=<value> on the command line$",
        args=("data.root=???",),
    ),
    Case(
        "data.root missing",
        r"nowhere: data\.root not found; check the path",
        args=("data.root={user}/nowhere",),
    ),
    Case(
        "batch larger than the train split",
        r"data\.batch_size=64 but the train split of .* has 6 image\(s\): not one full batch .*data\.batch_size=6",
        args=("data.batch_size=64",),
    ),
    # --- the command line ---------------------------------------------------------------------------------
    Case(
        "unknown option",
        r"^head=nope: no such option in conf/head/; choose one of bce_dice, .*sigmoid_bce, .*tanh_mse$",
        args=("head=nope",),
        command_line=True,
    ),
    Case(
        "config group set to null",
        r"^scheduler=null: a config group takes one of its options, not null; choose one of constant, cosine, one_cycle,"
        r" or drop it with ~scheduler$",
        args=("scheduler=null",),
    ),
    Case(
        "unknown key",
        r"^nope=1: the config has no key 'nope'; check the spelling \(`python train.py --cfg job` prints every key\),"
        r" or add a new key with \+nope=1$",
        args=("nope=1",),
        command_line=True,
    ),
    Case(
        "unknown trainer key",
        r"^trainer\.nope=1: trainer has no key 'nope'",
        args=("trainer.nope=1",),
    ),
    Case(
        "misspelled key",
        r"^trainer\.max_epoch=3: trainer has no key 'max_epoch'; did you mean trainer\.max_epochs\?",
        args=("trainer.max_epoch=3",),
    ),
    Case(
        "override syntax",
        r"^trainer\.max_epochs=\[1,: not a valid override \(no viable alternative at input '\[1,'\); quote a value",
        args=("trainer.max_epochs=[1,",),
    ),
    Case(
        "bad value",
        r"^trainer\.precision='banana' is not valid: precision of Trainer must be one of .*'bf16-mixed', '32-true'",
        args=("trainer.precision=banana",),
    ),
    Case(
        "wrongly typed value",
        r"^trainer\.max_epochs='abc' is not valid: max_epochs of Trainer must be an integer or null$",
        args=("trainer.max_epochs=abc",),
        command_line=True,
    ),
    Case(
        "wrongly typed learning rate",
        r"^optimizer\.lr='fast' is not valid: lr of AdamW must be a number",
        args=("optimizer.lr=fast",),
    ),
    Case(
        "negative batch size",
        r"^data\.batch_size=-3: must be a whole number >= 1$",
        args=("data.batch_size=-3",),
    ),
    Case(
        "negative learning rate",
        r"^optimizer\.lr=-1: must be a number >= 0$",
        args=("optimizer.lr=-1",),
        command_line=True,
    ),
    Case(
        "launcher value out of range",  # refused when the multirun starts, before joblib sees it or a job starts
        r"^hydra\.launcher\.n_jobs=0: must be a whole number >= 1 or a whole number <= -1$",
        args=("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=0", "hydra.sweep.dir={run}", "seed=0,1"),
        command_line=True,
    ),
    Case(
        "fraction out of range, unused by this data",  # the folder has its own val/: data.split.val is not read
        r"^data\.split\.val=1\.5: must be a number in \[0, 1\)$",
        args=("data.split.val=1.5",),
    ),
    Case(
        "padding the network cannot take",
        r"^data\.pad_multiple=48: must be a whole number >= 1, a multiple of 32 \(2 \*\* model\.encoder_depth\)$",
        args=("data.pad_multiple=48",),
    ),
    Case(
        "trainer=gpu without a GPU",
        r"^trainer\.accelerator=gpu: torch sees no CUDA GPU on this machine; use trainer=cpu, or trainer=default",
        args=("trainer=gpu",),
        patch=no_gpu,
        env={"CUDA_VISIBLE_DEVICES": ""},
    ),
    # --- the run ------------------------------------------------------------------------------------------
    Case(
        "NaN loss",
        r"train/loss is (nan|inf) at step \d+ .*training stopped, .*lower optimizer\.lr or set trainer\.gradient_clip_val",
        args=("optimizer.lr=1e30",),
    ),
    Case(
        "unwritable output folder",
        r"^hydra\.run\.dir=.*notes\.txt/run: cannot write there \(Not a directory\); choose a writable hydra\.run\.dir",
        args=("hydra.run.dir={user}/notes.txt/run",),
        make=lambda u: write(u / "notes.txt", b"a file where a folder should be"),
    ),
    Case(
        "disk without room",
        r"1 MiB free, but this run's checkpoints need about \d+ MiB; free space or choose another hydra\.run\.dir",
        patch=full_disk,
    ),
    Case(
        "another run's directory",
        r"old_run: already the directory of another run \(started 2026-11-01 09:00:00 on gpu1\); .*resume=",
        args=("hydra.run.dir={user}/old_run",),
        make=another_runs_directory,
    ),
    Case(
        "missing resume directory",
        r"^resume=.*nope: no such run directory; pass the directory of the run to continue$",
        args=("resume={user}/nope", "hydra.run.dir={user}/nope"),
    ),
    Case(
        "resume directory without checkpoints",
        r"resume=.*empty_run: no checkpoints/last\.ckpt there; pass a run directory that wrote checkpoints",
        args=("resume={user}/empty_run", "hydra.run.dir={user}/empty_run"),
        make=lambda u: (u / "empty_run").mkdir(),
    ),
    Case(
        "truncated checkpoint (resume)",
        r"old/checkpoints/last\.ckpt: cannot be read as a checkpoint \(\w+\); use a \.ckpt a run wrote$",
        args=("resume={user}/../old", "hydra.run.dir={user}/../old"),
        make=a_run_with(lambda path: a_checkpoint(path, truncate=True)),
    ),
    Case(
        "foreign checkpoint (resume)",
        r"old/checkpoints/last\.ckpt: no 'seg_config' in this checkpoint; it was not written by this project's train\.py$",
        args=("resume={user}/../old", "hydra.run.dir={user}/../old"),
        make=a_run_with(lambda path: a_checkpoint(path, config=False)),
    ),
    # --- faults during the run ----------------------------------------------------------------------------
    Case(
        "disk full while a checkpoint is written",
        r"checkpoints/best\.ckpt: the checkpoint could not be written \(No space left on device\); no earlier one was"
        r" written; free space on that disk, then continue the run with resume=",
        patch=disk_full_at_checkpoint,
    ),
    Case(
        "data file removed after the validation pass",
        r"train/images/img_002\.png: file not found \(it was there when the data was checked\); restore it",
        args=("data.cache=false",),  # a cached image is never read again: nothing to fail
        patch=after_the_validation_pass(lambda root: (root / "train/images/img_002.png").unlink(missing_ok=True)),
        changes=("data/train/images/img_002.png",),
    ),
    Case(
        "data file removed while loader workers read",  # the error is raised in a worker process
        r"^\S*train/images/img_002\.png: file not found \(it was there when the data was checked\); restore it",
        args=("data.cache=false", "data.num_workers=2"),
        patch=after_the_validation_pass(lambda root: (root / "train/images/img_002.png").unlink(missing_ok=True)),
        changes=("data/train/images/img_002.png",),
    ),
    Case(
        "data file changed after the validation pass",
        r"train/masks/img_003\.png: mask size \(10, 32\) differs from its image's \(32, 32\); masks must match",
        args=("data.cache=false",),
        patch=after_the_validation_pass(
            lambda root: image(root / "train/masks/img_003.png", np.zeros((32, 10), np.uint8))
        ),
        changes=("data/train/masks/img_003.png",),
    ),
    # --- eval.py, predict.py and scripts/export.py --------------------------------------------------------
    Case(
        "required value not given (eval)",
        r"^ckpt is required here: pass ckpt=<value> on the command line$",
        script="eval.py",
    ),
    Case(
        "missing checkpoint (eval)",
        r"nope\.ckpt: checkpoint not found; pass ckpt=<run dir>/checkpoints/best\.ckpt",
        script="eval.py",
        args=("ckpt={user}/nope.ckpt",),
    ),
    Case(
        "not a checkpoint (eval)",
        r"notes\.ckpt: cannot be read as a checkpoint \(\w+\); use a \.ckpt a run wrote",
        script="eval.py",
        args=("ckpt={user}/notes.ckpt",),
        make=lambda u: write(u / "notes.ckpt", b"best epoch: 12"),
    ),
    Case(
        "unknown key (eval)",
        r"^splt=val: the config has no key 'splt'; did you mean split\?",
        script="eval.py",
        args=("ckpt={user}/nope.ckpt", "splt=val"),
    ),
    Case(
        "missing checkpoint (predict)",
        r"nope\.ckpt: checkpoint not found; pass ckpt=",
        script="predict.py",
        args=("ckpt={user}/nope.ckpt", "input={data}/test/images", "output={run}"),
    ),
    Case(
        "value out of range (predict)",
        r"^batch_size=0: must be a whole number >= 1$",
        script="predict.py",
        args=("ckpt={user}/nope.ckpt", "input={data}/test/images", "output={run}", "batch_size=0"),
    ),
    Case(
        "value out of range (export)",
        r"^tolerance=-1: must be a number > 0$",
        script="scripts/export.py",
        args=("ckpt={user}/nope.ckpt", "tolerance=-1"),
    ),
    Case(
        "truncated checkpoint (eval)",
        r"best\.ckpt: cannot be read as a checkpoint \(\w+\); use a \.ckpt a run wrote$",
        script="eval.py",
        args=("ckpt={user}/best.ckpt",),
        make=lambda u: a_checkpoint(u / "best.ckpt", truncate=True),
    ),
    Case(
        "truncated checkpoint (predict)",
        r"best\.ckpt: cannot be read as a checkpoint \(\w+\); use a \.ckpt a run wrote$",
        script="predict.py",
        args=("ckpt={user}/best.ckpt", "input={data}/test/images", "output={run}"),
        make=lambda u: a_checkpoint(u / "best.ckpt", truncate=True),
    ),
    Case(
        "foreign checkpoint (predict)",
        r"other\.ckpt: no 'seg_config' in this checkpoint; it was not written by this project's train\.py$",
        script="predict.py",
        args=("ckpt={user}/other.ckpt", "input={data}/test/images", "output={run}"),
        make=lambda u: a_checkpoint(u / "other.ckpt", config=False),
    ),
    Case(
        "truncated checkpoint (export)",
        r"best\.ckpt: cannot be read as a checkpoint \(\w+\); use a \.ckpt a run wrote$",
        script="scripts/export.py",
        args=("ckpt={user}/best.ckpt", "format=torchscript", "output={run}/model.pt"),
        make=lambda u: a_checkpoint(u / "best.ckpt", truncate=True),
    ),
    Case(
        "foreign checkpoint (export)",
        r"other\.ckpt: no 'seg_config' in this checkpoint; it was not written by this project's train\.py$",
        script="scripts/export.py",
        args=("ckpt={user}/other.ckpt", "format=torchscript", "output={run}/model.pt"),
        make=lambda u: a_checkpoint(u / "other.ckpt", config=False),
    ),
]


@pytest.fixture(scope="module")
def clean_dataset(tmp_path_factory) -> Path:
    """The tiny folder dataset (6/2/2 grey 32 px pairs), built once; each case damages its own copy."""
    return write_tiny_folder_dataset(tmp_path_factory.mktemp("clean") / "data")


@pytest.fixture
def user(tmp_path, clean_dataset) -> Path:
    shutil.copytree(clean_dataset, tmp_path / "user" / "data")
    return tmp_path / "user"


def command(case: Case, user: Path, run: Path) -> list[str]:
    args = (*TRAIN_ARGS, *case.args) if case.script == "train.py" else case.args
    args = sorted(args, key=lambda arg: arg != "-m")  # Hydra's flags go before the overrides
    return [arg.format(data=user / "data", user=user, run=run) for arg in args]


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under `folder`: content hash and modification time."""
    return {
        str(p.relative_to(folder)): (hashlib.sha1(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


Result = namedtuple("Result", "returncode stdout stderr")


def run_in_process(script: str, args: list[str], capfd, monkeypatch) -> Result:
    """`python SCRIPT ARGS` in this process: the entry point's `__main__` block, Hydra's parsing included."""
    monkeypatch.setattr(sys, "argv", [str(PROJECT_DIR / script), *args])
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    capfd.readouterr()
    try:
        runpy.run_path(str(PROJECT_DIR / script), run_name="__main__")
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    finally:
        for handler in set(root.handlers) - set(handlers):  # Hydra's console and train.log handlers
            handler.close()
        root.handlers[:], root.level = handlers, level
    out, err = capfd.readouterr()
    return Result(code, out, err)


def assert_refused_in_one_line(result, case: Case) -> None:
    stderr = result.stderr
    assert "Traceback" not in stderr and "HYDRA_FULL_ERROR" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr[-3000:]
    assert re.search(case.line, errors[0].removeprefix("error: ")), errors[0]
    assert result.returncode == 2, (result.returncode, stderr[-3000:])


@pytest.mark.parametrize("case", CATALOGUE, ids=[case.id for case in CATALOGUE])
def test_a_bad_input_is_refused_in_one_line(case, user, tmp_path, capfd, monkeypatch):
    if case.make:
        case.make(user)
    if case.patch:
        case.patch(monkeypatch)
    before = snapshot(user)
    result = run_in_process(case.script, command(case, user, tmp_path / "run"), capfd, monkeypatch)
    assert_refused_in_one_line(result, case)
    after = snapshot(user)
    for changed in case.changes:  # the fault's own doing
        before.pop(changed, None), after.pop(changed, None)
    assert after == before  # nothing of the user's changed, nothing written among their files
    # stopped before any checkpoint (NaN: at step 1; a full disk: the half-written one removed)
    assert not list((tmp_path / "run" / "checkpoints").glob("*"))


def real_process_cases() -> list:
    """Every row a real process can reproduce (not the ones that need a patch). Each row also runs in-process by
    default; through a real process, two command-line rows stand for the rest in the default suite (a process
    start costs tens of seconds of imports), every row under the slow marker."""
    rows = [case for case in CATALOGUE if case.patch is None or case.env]
    default = {"unknown option", "override syntax"}
    return [pytest.param(case, id=case.id, marks=() if case.id in default else pytest.mark.slow) for case in rows]


@pytest.mark.parametrize("case", real_process_cases())
def test_a_bad_input_is_refused_in_one_line_by_a_real_process(case, user, tmp_path):
    if case.make:
        case.make(user)
    before = snapshot(user)
    result: subprocess.CompletedProcess = run_cli(
        *command(case, user, tmp_path / "run"), cwd=tmp_path, timeout=300, script=case.script, **case.env
    )
    assert_refused_in_one_line(result, case)
    assert snapshot(user) == before


def test_the_catalogue_in_the_docs_lists_every_case():
    page = (PROJECT_DIR / "docs" / "bad-input.md").read_text()
    section = page.split("## The catalogue", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| ([^|]+?) \|", section, flags=re.MULTILINE)[1:]  # past the header
    assert sorted(listed) == sorted(case.id for case in CATALOGUE)
