"""Is the framework slowing training down? Side by side, in one process, on the same model, batches and data.

Step mode (the default) times training steps inside one epoch:

- bare:    scripts/bench_loop.py's plain PyTorch loop over the project's training batches: forward, head loss,
           zero_grad, backward, optimizer step (autocast for bf16);
- project: the project's SegmentationModule under the project's Trainer, built by seg.run.train.build from the
           config (default callbacks and loggers: progress bar, checkpoints, lr monitor, CSV + TensorBoard, ...);
- loader:  the training DataLoader alone (with the device augmentation).

Each is timed over `--steps` training steps after `--warmup` untimed ones, `--repeats` times, interleaved
(bare, project, loader, bare, ...), so a noisy machine slows all three alike; the medians are compared.

End-to-end mode (`--end-to-end`) times what a user waits for, the whole run, against two floors:

- bare:    the same loop over the project's DataLoaders: every epoch's training, a validation IoU after each
           epoch (the best epoch's weights kept in memory), the test split scored with those weights at the end; it
           trains the very steps train() trains and reaches the same IoU;
- minimal: the same loop over data a user would hold by hand: every split one tensor, whole-batch flips,
           evaluation in `eval_batch_size` slices (other draws, so its IoU differs a little);
- project: seg.run.train.train(cfg), what `python train.py` runs after composing the config.

Interleaved (bare, minimal, project, ...) `--repeats` times; `--epochs N` shortens all alike. `--profile` also
times the project's run by phase and by callback (scripts/bench_profile.py) and the bare loop by phase.

`--suite gpu` runs the prepared GPU check (scripts/bench_suite.py): one JSON and one markdown table.

The last line printed is one JSON object. Examples:

    python scripts/bench.py                                              # the default config on this CPU
    python scripts/bench.py --device cuda --size 256 --precision bf16-mixed
    python scripts/bench.py --quiet-trainer                              # project without loggers/checkpoints
    python scripts/bench.py model.compile=true                           # any config override after the options
    python scripts/bench.py --end-to-end --repeats 3                     # the whole default run (18 epochs)
    python scripts/bench.py --end-to-end --epochs 4 --profile            # shorter, and where the time goes
    python scripts/bench.py --suite gpu                                  # on a GPU machine, < 8 minutes
    python scripts/bench.py --suite gpu --dry-run                        # every measurement briefly, on the CPU
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import bench_loop
import bench_profile
import bench_suite
import lightning as L
import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

import seg.run.train
from seg.paths import PROJECT_DIR
from seg.run.cli import quiet_library_noise
from seg.run.train import build, build_data

DEFAULT_SIZE = 64  # conf/data/synthetic.yaml


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="timed training steps per repeat (step mode)")
    parser.add_argument(
        "--warmup", type=int, default=5, help="untimed steps before each timing (end to end: once, before the first)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help="image side in pixels (generated data)")
    parser.add_argument("--precision", default=None, help="trainer.precision, e.g. bf16-mixed (default: config's)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--quiet-trainer", action="store_true", help="project without loggers, checkpoints, bar")
    parser.add_argument("--end-to-end", action="store_true", help="time whole runs: train() against bare loops")
    parser.add_argument("--epochs", type=int, default=None, help="trainer.max_epochs (end to end; default: config's)")
    parser.add_argument("--profile", action="store_true", help="end to end: time the runs by phase and callback")
    parser.add_argument("--out", type=Path, default=None, help="end to end: keep the project's run directories here;"
                        " --suite: write its JSON and table here (default outputs/bench)")  # fmt: skip
    parser.add_argument("--suite", choices=["gpu"], default=None, help="the prepared GPU check (bench_suite.py)")
    parser.add_argument("--dry-run", action="store_true", help="--suite: every measurement for a few steps, any device")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. data.batch_size=32")
    args = parser.parse_args()
    if not args.end_to_end and (args.epochs or args.profile or (args.out and not args.suite)):
        parser.error("--epochs, --profile and --out go with --end-to-end (--out also with --suite)")
    if args.end_to_end and args.quiet_trainer:
        parser.error("--quiet-trainer is for the step mode: end to end, the project runs as train.py runs it")
    if args.dry_run and not args.suite:
        parser.error("--dry-run goes with --suite")
    quiet_library_noise()
    L.seed_everything(0, workers=True, verbose=False)
    if args.suite:
        sys.exit(bench_suite.main(args, compose_config=bench_config))
    with tempfile.TemporaryDirectory() as tmp:
        if args.end_to_end:
            end_to_end(args, Path(tmp))
        else:
            steps(parser, args, Path(tmp))


def bench_config(args: argparse.Namespace, tmp: Path, *extra: str):
    """The run's config for these options; `extra` overrides come after the user's."""
    overrides = [
        f"paths.output_dir={tmp / 'run'}",
        f"trainer.accelerator={'gpu' if args.device == 'cuda' else 'cpu'}",
    ]
    if args.end_to_end:
        overrides += [f"trainer.max_epochs={args.epochs}"] if args.epochs else []
    else:
        overrides.append(f"trainer.max_steps={args.warmup + args.steps}")
    if args.size != DEFAULT_SIZE:  # other data than the embedded dataset: generated once into its own folder
        overrides += [
            f"data.root=data/bench_{args.size}",
            f"data.source.size={args.size}",
            # 64 batches of 16: room for the default warm-up and steps (35) inside one epoch, and for --steps 55
            "data.source.counts={train: 1024, val: 16, test: 16}",
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
        return compose(config_name="train", overrides=overrides + list(args.overrides) + list(extra))


# ---------------------------------------------------------------------------------------------------------------------
# Step mode
# ---------------------------------------------------------------------------------------------------------------------


def steps(parser: argparse.ArgumentParser, args: argparse.Namespace, tmp: Path) -> None:
    cfg = bench_config(args, tmp)
    epoch = len(build_data(cfg).train_dataloader())
    if args.warmup + args.steps > epoch:  # past an epoch the Trainer would validate and checkpoint in the timing
        parser.error(
            f"--warmup + --steps = {args.warmup + args.steps} is more than one epoch ({epoch} batches); use fewer steps"
        )
    summary = step_figures(cfg, args, tmp)
    print()
    print(f"{'':10}{'steps/s (median)':>18}{'images/s':>10}   all repeats")
    for name in ("bare", "project", "loader"):
        value = summary[f"{name}_{'batches' if name == 'loader' else 'steps'}_per_s"]
        each = " ".join(f"{v:.2f}" for v in summary["each"][name])
        print(f"{name:10}{value:18.2f}{value * summary['batch_size']:10.0f}   {each}")
    print(json.dumps(summary))


def step_figures(cfg, args: argparse.Namespace, tmp: Path) -> dict:
    """Bare, project and loader rates, interleaved `args.repeats` times; medians and their ratios."""
    device = torch.device(args.device)
    results = {"bare": [], "project": [], "loader": []}
    for repeat in range(args.repeats):
        results["bare"].append(bench_loop.steps_per_s(cfg, device, warmup=args.warmup, steps=args.steps))
        results["project"].append(project_steps_per_s(cfg, args, tmp / f"project{repeat}"))
        results["loader"].append(loader_batches_per_s(cfg, args))
        print(f"repeat {repeat + 1}/{args.repeats}: " + ", ".join(f"{k} {v[-1]:.2f}/s" for k, v in results.items()))
    bare, project, loader = (statistics.median(results[k]) for k in ("bare", "project", "loader"))
    return {
        "bare_steps_per_s": round(bare, 6),  # the ratios below are of these, unrounded
        "project_steps_per_s": round(project, 6),
        "loader_batches_per_s": round(loader, 6),
        "overhead_ratio": round(project / bare, 3),
        "loader_ratio": round(loader / project, 3),
        "each": {k: [round(v, 3) for v in vs] for k, vs in results.items()},
        "batch_size": cfg.data.batch_size,
        "size": args.size,
        "precision": cfg.trainer.precision,
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "steps": args.steps,
        "repeats": args.repeats,
        "quiet_trainer": args.quiet_trainer,
        "overrides": args.overrides,
    }


class StepTimer(L.Callback):
    """Wall time from the start of training step `warmup` (its batch already fetched) to the end of the last step.

    It stops at the last batch's end, before the epoch-end hooks that max_steps triggers (last.ckpt is saved there).
    """

    def __init__(self, warmup: int, device: torch.device) -> None:
        self.warmup, self.device = warmup, device
        self.start = self.end = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup and not self.start:
            bench_loop.synchronize(self.device)
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == trainer.max_steps:
            bench_loop.synchronize(self.device)
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
    data = bench_loop.ProjectData(build_data(cfg), torch.device(args.device))
    batches = data.train(0)
    for _ in range(args.warmup):
        next(batches)
    start = time.perf_counter()
    for _ in range(args.steps):
        next(batches)
    bench_loop.synchronize(torch.device(args.device))
    return args.steps / (time.perf_counter() - start)


# ---------------------------------------------------------------------------------------------------------------------
# End to end: whole runs
# ---------------------------------------------------------------------------------------------------------------------

# Trainer settings the bare loop reproduces only at these values: whole epochs, one validation after each.
BARE_LOOP_TRAINER = {
    "max_steps": -1,
    "limit_train_batches": None,
    "limit_val_batches": None,
    "val_check_interval": None,
    "check_val_every_n_epoch": 1,
    "accumulate_grad_batches": 1,
    "gradient_clip_val": None,
}


def end_to_end(args: argparse.Namespace, tmp: Path) -> None:
    cfg = bench_config(args, tmp)
    unlike = {k: cfg.trainer.get(k) for k, v in BARE_LOOP_TRAINER.items() if cfg.trainer.get(k) != v}
    if unlike:
        raise SystemExit(
            f"error: end to end, the bare loop trains whole epochs and validates after each; drop {unlike}"
        )
    out = args.out.resolve() if args.out else tmp / "runs"
    summary = end_to_end_figures(cfg, args, out)
    print()
    print(f"{'':10}{'seconds (median)':>18}   all repeats")
    for name in ("bare", "minimal", "project"):
        each = summary[f"{name}_seconds_each"]
        print(f"{name:10}{summary[f'{name}_seconds']:18.2f}   " + " ".join(f"{s:.2f}" for s in each))
    print(json.dumps(summary))


def end_to_end_figures(cfg, args: argparse.Namespace, out: Path) -> dict:
    """Whole runs, bare, minimal and project interleaved `args.repeats` times; medians and ratios to project."""
    device = torch.device(args.device)
    epoch = len(build_data(cfg).train_dataloader())  # also generates the dataset if it is not there yet
    if args.warmup:  # one-time costs (allocator, kernels) would otherwise fall on the first timed run alone
        bench_loop.steps_per_s(cfg, device, warmup=0, steps=min(args.warmup, epoch))
    runs: dict[str, list[dict]] = {"bare": [], "minimal": [], "project": []}
    for repeat in range(args.repeats):
        runs["bare"].append(bench_loop.run(cfg, device, minimal=False))
        runs["minimal"].append(bench_loop.run(cfg, device, minimal=True))
        runs["project"].append(project_run(cfg, out / f"project{repeat}", profile=args.profile))
        print(
            f"repeat {repeat + 1}/{args.repeats}: "
            + ", ".join(f"{name} {r[-1]['seconds']:.1f} s" for name, r in runs.items())
            + f" (train_seconds {runs['project'][-1]['train_seconds']:.1f})",
            flush=True,
        )
    seconds = {name: statistics.median(r["seconds"] for r in rs) for name, rs in runs.items()}
    bare, minimal, project = runs["bare"], runs["minimal"], runs["project"]
    summary = {
        "mode": "end_to_end",
        **{f"{name}_seconds": round(s, 3) for name, s in seconds.items()},
        "ratio": round(seconds["bare"] / seconds["project"], 4),  # project against the bare loop
        "minimal_ratio": round(seconds["minimal"] / seconds["project"], 4),  # project against the minimal loop
        **{f"{name}_seconds_each": [round(r["seconds"], 3) for r in rs] for name, rs in runs.items()},
        "ratio_each": [round(b["seconds"] / p["seconds"], 4) for b, p in zip(bare, project, strict=True)],
        "minimal_ratio_each": [round(m["seconds"] / p["seconds"], 4) for m, p in zip(minimal, project, strict=True)],
        "train_seconds_each": [p["train_seconds"] for p in project],  # summary.json's: Trainer.fit alone
        "epochs": int(cfg.trainer.max_epochs),
        "steps": project[-1]["steps"],
        "bare_steps": bare[-1]["steps"],
        "minimal_steps": minimal[-1]["steps"],
        **{f"{name}_test_iou": rs[-1]["test_iou"] for name, rs in runs.items()},
        **{f"{name}_val_iou": rs[-1]["val_iou"] for name, rs in runs.items()},
        "size": args.size,
        "precision": cfg.trainer.precision,
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "overrides": args.overrides,
    }
    if args.profile:
        summary["profile"] = bench_profile.print_profile(bare, project)
    return summary


def project_run(cfg, run_dir: Path, *, profile: bool) -> dict:
    """seg.run.train.train(cfg) into `run_dir`, timed whole; with `profile`, its Trainer gets a HookProfiler."""
    cfg = copy.deepcopy(cfg)
    cfg.paths.output_dir = str(run_dir)
    if profile:  # the Trainer's own `profiler` argument, as a user would set it
        with open_dict(cfg.trainer):
            cfg.trainer.profiler = {"_target_": "bench_profile.HookProfiler", "dirpath": str(run_dir)}
    start = time.perf_counter()
    summary = seg.run.train.train(cfg)
    seconds = time.perf_counter() - start
    result = {
        "seconds": seconds,
        "train_seconds": summary["train_seconds"],
        "steps": summary["global_step"],
        "val_iou": summary["val/iou"],
        "test_iou": summary["test/iou"],
    }
    if profile:
        result["phases"] = bench_profile.breakdown(bench_profile.read(run_dir), seconds)
    return result


if __name__ == "__main__":
    main()
