"""What a run's checkpoints hold and when they are written: best.ckpt the weights, last.ckpt the whole state."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from seg.errors import UserError
from seg.inference.checkpoint import read_checkpoint
from seg.model.module import CONFIG_KEY
from seg.run.checkpoint_io import FileCheckpointIO
from seg.run.train import build, train


def fit_recording_saves(cfg) -> tuple[list[dict], object]:
    """Fit through build(), recording each checkpoint save: file, step, weights_only, and ModelCheckpoint's best
    score and the epoch's val/iou at that moment."""
    module, datamodule, trainer = build(cfg)
    (best,) = [c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)]
    saves: list[dict] = []
    save = trainer.save_checkpoint

    def recording(path, weights_only=None, storage_options=None):
        metrics = trainer.callback_metrics
        saves.append(
            {
                "file": Path(path).name,
                "step": trainer.global_step,
                "weights_only": bool(weights_only),
                "best_score": float(best.best_model_score) if best.best_model_score is not None else None,
                "val_iou": float(metrics["val/iou"]) if "val/iou" in metrics else None,
            }
        )
        save(path, weights_only, storage_options)

    trainer.save_checkpoint = recording
    trainer.fit(module, datamodule=datamodule)
    return saves, trainer


def test_last_ckpt_every_n_steps_since_the_last_save_and_at_the_end(tiny_cfg):
    """4 steps an epoch, 3 epochs: last.ckpt at step 6 (mid-epoch) and 12 (the end), not at every epoch's end."""
    saves, _ = fit_recording_saves(tiny_cfg("callbacks.resumable_checkpoint.every_n_train_steps=6"))
    last = [s for s in saves if s["file"] == "last.ckpt"]
    assert [s["step"] for s in last] == [6, 12]
    assert not any(s["weights_only"] for s in last)
    best = [s for s in saves if s["file"] == "best.ckpt"]
    assert best and all(s["weights_only"] for s in best) and {s["step"] for s in best} <= {4, 8, 12}


def test_an_epoch_end_last_ckpt_records_that_epochs_best_decision(tiny_cfg):
    """last.ckpt is saved after ModelCheckpoint has judged the epoch's val/iou, so a resumed run keeps the right
    best.ckpt (saved before that judgement, a resume could overwrite best.ckpt with a worse model)."""
    saves, trainer = fit_recording_saves(tiny_cfg("callbacks.resumable_checkpoint.every_n_train_steps=4"))
    last = [s for s in saves if s["file"] == "last.ckpt"]
    assert [s["step"] for s in last] == [4, 8, 12]  # each epoch's end
    seen = []
    for save in last:
        seen.append(save["val_iou"])
        assert save["best_score"] == pytest.approx(max(seen), abs=0)  # this epoch's score already counted

    state = torch.load(Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt", weights_only=True)
    (key,) = [k for k in state["callbacks"] if k.startswith("ModelCheckpoint")]
    assert float(state["callbacks"][key]["best_model_score"]) == max(seen)


def test_best_ckpt_holds_weights_and_config_and_last_ckpt_the_training_state(tiny_cfg):
    summary = train(tiny_cfg("trainer.max_epochs=2"))
    best = read_checkpoint(summary["best_checkpoint"])
    assert "state_dict" in best and CONFIG_KEY in best  # what eval.py, predict.py and export read
    assert "optimizer_states" not in best and "lr_schedulers" not in best and "callbacks" not in best
    last = read_checkpoint(Path(summary["run_dir"]) / "checkpoints" / "last.ckpt")
    assert {"state_dict", "optimizer_states", "lr_schedulers", "callbacks", "loops", CONFIG_KEY} <= last.keys()
    moments = last["optimizer_states"][0]["state"]
    assert moments and all({"exp_avg", "exp_avg_sq"} <= s.keys() for s in moments.values())  # AdamW's, for resume
    weights = [k for k in best["state_dict"] if k.startswith("net.")]
    assert (
        weights
        and Path(summary["best_checkpoint"]).stat().st_size
        < 0.5 * (Path(summary["run_dir"]) / "checkpoints" / "last.ckpt").stat().st_size
    )


def test_file_checkpoint_io_replaces_the_file_whole(tmp_path, monkeypatch):
    io, path = FileCheckpointIO(), tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"step": 1, "w": torch.ones(3)}, path)
    io.save_checkpoint({"step": 2, "w": torch.zeros(3)}, path)
    assert torch.load(path, weights_only=True)["step"] == 2 and [p.name for p in path.parent.iterdir()] == [path.name]

    def broken_save(obj, file):  # dies half-way through writing, as a full disk or a kill would
        Path(file).write_bytes(b"half a checkpoint")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(UserError, match="the checkpoint could not be written"):  # one line (tests/test_faults.py)
        io.save_checkpoint({"step": 3}, path)
    assert torch.load(path, weights_only=True)["step"] == 2  # the previous checkpoint is whole
    with pytest.raises(TypeError, match="storage_options"):
        io.save_checkpoint({"step": 4}, path, storage_options={"x": 1})


def test_file_checkpoint_io_leaves_remote_paths_to_lightning():
    # memory:// stands for s3:// and the like: not a local file, so Lightning's own (fsspec) writer saves it
    path = "memory://checkpoints/remote.ckpt"
    FileCheckpointIO().save_checkpoint({"step": 7}, path)
    with fsspec.open(path, "rb") as file:
        assert torch.load(file, weights_only=True)["step"] == 7
