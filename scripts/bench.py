"""Is the framework slowing training down? Side by side, in one process, on the same model, batches and data:

- bare:    a plain PyTorch loop over the project's training DataLoader: to(device), forward, head loss, zero_grad,
           backward, AdamW step (autocast for bf16);
- project: the project's SegmentationModule under the project's Trainer, built by seg.run.train.build from the
           config (default callbacks and loggers: progress bar, checkpoints, lr monitor, CSV + TensorBoard, ...);
- loader:  the training DataLoader alone.

Each is timed over `--steps` training steps after `--warmup` untimed ones, `--repeats` times, interleaved
(bare, project, loader, bare, ...), so a noisy machine slows all three alike; the medians are compared.
The last line printed is one JSON object. Examples:

    python scripts/bench.py                                              # the default config on this CPU
    python scripts/bench.py --device cuda --size 256 --precision bf16-mixed
    python scripts/bench.py --quiet-trainer                              # project without loggers/checkpoints
    python scripts/bench.py model.compile=true                           # any config override after the options
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from seg.model.network import build_network
from seg.paths import PROJECT_DIR
from seg.run.cli import quiet_library_noise
from seg.run.train import build, build_data

DEFAULT_SIZE = 64  # conf/data/synthetic.yaml


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="timed training steps per repeat")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before each timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help="image side in pixels (generated data)")
    parser.add_argument("--precision", default=None, help="trainer.precision, e.g. bf16-mixed (default: config's)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--quiet-trainer", action="store_true", help="project without loggers, checkpoints, bar")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. data.batch_size=32")
    args = parser.parse_args()
    quiet_library_noise()
    L.seed_everything(0, workers=True, verbose=False)

    with tempfile.TemporaryDirectory() as tmp:
        cfg = bench_config(args, Path(tmp))
        epoch = len(training_loader(cfg))
        if args.warmup + args.steps > epoch:  # past an epoch the Trainer would validate and checkpoint in the timing
            parser.error(
                f"--warmup + --steps = {args.warmup + args.steps} is more than one epoch ({epoch} batches); use fewer steps"
            )
        results = {"bare": [], "project": [], "loader": []}
        for repeat in range(args.repeats):
            results["bare"].append(bare_steps_per_s(cfg, args))
            results["project"].append(project_steps_per_s(cfg, args, Path(tmp) / f"project{repeat}"))
            results["loader"].append(loader_batches_per_s(cfg, args))
            print(f"repeat {repeat + 1}/{args.repeats}: " + ", ".join(f"{k} {v[-1]:.2f}/s" for k, v in results.items()))

    bare, project, loader = (statistics.median(results[k]) for k in ("bare", "project", "loader"))
    batch = cfg.data.batch_size
    print()
    print(f"{'':10}{'steps/s (median)':>18}{'images/s':>10}   all repeats")
    for name, value in (("bare", bare), ("project", project), ("loader", loader)):
        print(f"{name:10}{value:18.2f}{value * batch:10.0f}   " + " ".join(f"{v:.2f}" for v in results[name]))
    summary = {
        "bare_steps_per_s": round(bare, 3),
        "project_steps_per_s": round(project, 3),
        "loader_batches_per_s": round(loader, 3),
        "overhead_ratio": round(project / bare, 3),
        "loader_ratio": round(loader / project, 3),
        "batch_size": batch,
        "size": args.size,
        "precision": cfg.trainer.precision,
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "steps": args.steps,
        "repeats": args.repeats,
        "quiet_trainer": args.quiet_trainer,
        "overrides": args.overrides,
    }
    print(json.dumps(summary))


def bench_config(args: argparse.Namespace, tmp: Path):
    overrides = [
        f"paths.output_dir={tmp / 'run'}",
        f"trainer.accelerator={'gpu' if args.device == 'cuda' else 'cpu'}",
        f"trainer.max_steps={args.warmup + args.steps}",
    ]
    if args.size != DEFAULT_SIZE:  # other data than the embedded dataset: generated once into its own folder
        overrides += [
            f"data.root=data/bench_{args.size}",
            f"data.source.size={args.size}",
            "data.source.counts={train: 512, val: 16, test: 16}",
        ]
    if args.precision:
        overrides.append(f"trainer.precision={args.precision}")
    if args.quiet_trainer:
        overrides += [
            "~logger",
            "~callbacks",
            "+trainer.enable_checkpointing=false",
            "+trainer.enable_progress_bar=false",
        ]
    with initialize_config_dir(config_dir=str(PROJECT_DIR / "conf"), version_base="1.3"):
        return compose(config_name="train", overrides=overrides + list(args.overrides))


def training_loader(cfg):
    return build_data(cfg).train_dataloader()  # as train.build sets the data up


def bare_steps_per_s(cfg, args: argparse.Namespace) -> float:
    device = torch.device(args.device)
    datamodule = build_data(cfg)
    batches = iter(datamodule.train_dataloader())
    head = instantiate(cfg.head)
    in_channels = datamodule.resolved()["in_channels"]
    net = build_network(cfg.model, head=head, in_channels=in_channels).to(device)  # as training builds it
    optimizer = instantiate(cfg.optimizer)(params=net.parameters())
    bf16 = str(cfg.trainer.precision).startswith("bf16")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
    torch.backends.cudnn.benchmark = bool(cfg.trainer.get("benchmark"))  # as the Trainer sets it
    net.train()
    start = 0.0
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            synchronize(device)
            start = time.perf_counter()
        batch = next(batches)
        image = batch["image"].to(device, non_blocking=True)  # (B, C, H, W)
        mask = batch["mask"].to(device, non_blocking=True)  # (B, 1, H, W) {0, 1}
        valid = batch["valid"].to(device, non_blocking=True)  # (B, 1, H, W) bool: pixels that count
        with autocast:
            loss = head.loss(net(image), mask, valid)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    synchronize(device)
    return args.steps / (time.perf_counter() - start)


class StepTimer(L.Callback):
    """Wall time from the start of training step `warmup` (its batch already fetched) to the end of the last step.

    It stops at the last batch's end, before the epoch-end hooks that max_steps triggers (last.ckpt is saved there).
    """

    def __init__(self, warmup: int, device: torch.device) -> None:
        self.warmup, self.device = warmup, device
        self.start = self.end = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup and not self.start:
            synchronize(self.device)
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == trainer.max_steps:
            synchronize(self.device)
            self.end = time.perf_counter()


def project_steps_per_s(cfg, args: argparse.Namespace, run_dir: Path) -> float:
    cfg = cfg.copy()
    cfg.paths.output_dir = str(run_dir)
    module, datamodule, trainer = build(cfg)
    # The loader's time counts as in bare: Lightning fetches each next batch inside the timed steps.
    timer = StepTimer(args.warmup, torch.device(args.device))
    trainer.callbacks.insert(0, timer)
    trainer.fit(module, datamodule=datamodule)
    return args.steps / (timer.end - timer.start)


def loader_batches_per_s(cfg, args: argparse.Namespace) -> float:
    batches = iter(training_loader(cfg))
    for _ in range(args.warmup):
        next(batches)
    start = time.perf_counter()
    for _ in range(args.steps):
        next(batches)
    return args.steps / (time.perf_counter() - start)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
