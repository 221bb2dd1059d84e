"""Self-describing checkpoints: each holds its run's resolved config, so it alone rebuilds model, head and data.

`SegmentationModule.on_save_checkpoint` stores the config under `CONFIG_KEY`; predict.py, eval.py and
scripts/export.py then need only `ckpt=`, and a resumed run is checked against the config it continues.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from seg.errors import UserError
from seg.heads import Head
from seg.model.module import CONFIG_KEY
from seg.model.network import build_network

# What the end of a run adds to best.ckpt: {"val_threshold": float, "temperature": float} (seg/inference/operating_point.py).
OPERATING_POINT_KEY = "seg_operating_point"
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"  # what resume= continues from (conf/callbacks/default.yaml)
NO_CHECKPOINT = f"no {LAST_CHECKPOINT} there; pass a run directory that wrote checkpoints"
# What a resumed run may change: where it writes (the same directory anyway) and how long it trains.
RESUMABLE_CHANGES = ("resume", "paths", "trainer.max_epochs")


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint's dict on the CPU, or a UserError naming the file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found; pass ckpt=<run dir>/checkpoints/best.ckpt")
    try:
        # Our checkpoints hold only tensors and plain containers, so the safe loader reads them.
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated file, not a torch file, foreign pickle: the cause is one line
        raise UserError(
            f"{path}: cannot be read as a checkpoint ({type(error).__name__}); use a .ckpt a run wrote"
        ) from None
    if CONFIG_KEY not in checkpoint:
        raise UserError(f"{path}: no '{CONFIG_KEY}' in this checkpoint; it was not written by this project's train.py")
    return checkpoint


def saved_config(checkpoint: dict) -> DictConfig:
    return OmegaConf.create(checkpoint[CONFIG_KEY])


@dataclass
class TrainedModel:
    net: nn.Module  # (B, in_channels, H, W) normalized image -> (B, out_channels, H, W) logits; eval mode
    head: Head
    config: DictConfig  # the training run's resolved config
    operating_point: dict = field(default_factory=dict)  # val_threshold, temperature: when the run stored them

    @property
    def stride(self) -> int:
        """Input height and width must be multiples of this (the U-Net halves them `encoder_depth` times)."""
        return 2 ** int(self.config.model.get("encoder_depth", 5))

    def probability(self, image: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) normalized image -> (B, 1, H, W) foreground probability."""
        return self.head.probability(self.net(image))


def pick_device(device: str) -> torch.device:
    """`auto`: the GPU when there is one, else the CPU; anything else is a torch device string."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise UserError(f"device={device!r} is not a torch device; use auto, cpu, cuda or cuda:N") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device={device}: torch sees no CUDA GPU on this machine; use device=cpu or device=auto")
    return chosen


def load_trained_model(path: str | Path, device: str | torch.device = "cpu") -> TrainedModel:
    """Network (eval mode, on `device`), head and config, from the checkpoint alone."""
    checkpoint = read_checkpoint(path)
    config = saved_config(checkpoint)
    head = instantiate(config.head)
    # Not compiled for inference, whatever training did (configs from before model.compile existed lack the key).
    overrides = {"compile": False} if "compile" in config.model else {}
    if config.model.get("encoder_weights_path"):  # the checkpoint holds the trained weights; the file may be gone
        overrides["encoder_weights_path"] = None
    net = build_network(config.model, head=head, in_channels=int(config.data.in_channels), **overrides)
    weights = {k.removeprefix("net."): v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
    net.load_state_dict(weights)
    return TrainedModel(
        net=net.to(device).eval(),
        head=head,
        config=config,
        operating_point=dict(checkpoint.get(OPERATING_POINT_KEY, {})),
    )


def store_operating_point(path: str | Path, values: dict[str, float]) -> None:
    """Add the validation-picked threshold and temperature to a checkpoint, so eval.py and predict.py reuse them.

    Written to a temporary file and renamed over the original: an interrupted write leaves the old checkpoint.
    """
    path = Path(path)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    checkpoint[OPERATING_POINT_KEY] = {key: float(value) for key, value in values.items()}
    partial = path.with_name(path.name + ".partial")
    torch.save(checkpoint, partial)
    os.replace(partial, path)


def resume_checkpoint(cfg: DictConfig) -> Path | None:
    """`resume=<run dir>`: its last.ckpt, after checking that this run continues it unchanged; else None."""
    if not cfg.get("resume"):
        return None
    run_dir = Path(cfg.resume).expanduser().resolve()
    if Path(cfg.paths.output_dir).resolve() != run_dir:
        raise UserError(
            f"resume={cfg.resume}: this run writes to {cfg.paths.output_dir}, not the resumed directory;"
            " drop the hydra.run.dir / paths.output_dir override (resume sets it), and do not resume inside -m"
        )
    last = run_dir / LAST_CHECKPOINT
    if not last.is_file():
        raise UserError(f"resume={cfg.resume}: {NO_CHECKPOINT}")
    saved = saved_config(read_checkpoint(last))
    changed = config_changes(saved, OmegaConf.create(OmegaConf.to_container(cfg, resolve=True)))
    if changed:
        raise UserError(
            f"resume={cfg.resume}: the config differs from the run's ({'; '.join(changed[:5])});"
            f" resume with the run's overrides (see {run_dir / '.hydra' / 'overrides.yaml'}), changing only trainer.max_epochs"
        )
    if saved.trainer.max_epochs != cfg.trainer.max_epochs and _laid_over_the_budget(saved.get("scheduler")):
        raise UserError(
            f"resume={cfg.resume}: trainer.max_epochs {saved.trainer.max_epochs} -> {cfg.trainer.max_epochs}, but the"
            " learning-rate schedule was laid over the first run's step budget; keep"
            f" trainer.max_epochs={saved.trainer.max_epochs}, or resume a run trained with scheduler=constant"
        )
    return last


def _laid_over_the_budget(scheduler: DictConfig | None) -> bool:
    """Whether a schedule's shape depends on the step budget (all but `constant`): lengthening the run would break it."""
    return bool(scheduler) and not getattr(get_object(scheduler._target_), "independent_of_budget", False)


def config_changes(saved: DictConfig, current: DictConfig) -> list[str]:
    """`key: saved -> current` for every leaf that differs, except RESUMABLE_CHANGES."""
    old, new = _leaves(OmegaConf.to_container(saved)), _leaves(OmegaConf.to_container(current))
    changed = []
    for key in sorted(old.keys() | new.keys()):
        if any(key == allowed or key.startswith(allowed + ".") for allowed in RESUMABLE_CHANGES):
            continue
        if old.get(key, "<absent>") != new.get(key, "<absent>"):
            changed.append(f"{key}: {old.get(key, '<absent>')} -> {new.get(key, '<absent>')}")
    return changed


def _leaves(node: object, prefix: str = "") -> dict[str, object]:
    """{"trainer.max_epochs": 18, ...}: a nested dict flattened to dotted keys (lists are leaves)."""
    if not isinstance(node, dict) or not node:
        return {prefix: node}
    out: dict[str, object] = {}
    for key, value in node.items():
        out.update(_leaves(value, f"{prefix}.{key}" if prefix else str(key)))
    return out
