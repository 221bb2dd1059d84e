"""Is the framework slowing training down? Side by side, in one process, on the same model, batches and data.

Step mode (the default) times training steps inside one epoch:

- bare:    a plain PyTorch loop over the project's training DataLoader: to(device), forward, head loss, zero_grad,
           backward, AdamW step (autocast for bf16);
- project: the project's SegmentationModule under the project's Trainer, built by seg.run.train.build from the
           config (default callbacks and loggers: progress bar, checkpoints, lr monitor, CSV + TensorBoard, ...);
- loader:  the training DataLoader alone.

Each is timed over `--steps` training steps after `--warmup` untimed ones, `--repeats` times, interleaved
(bare, project, loader, bare, ...), so a noisy machine slows all three alike; the medians are compared.

End-to-end mode (`--end-to-end`) times what a user waits for, the whole run:

- bare:    the same network, head loss, AdamW and learning-rate schedule over the same DataLoaders: every epoch's
           training, a validation pass computing IoU after each epoch (the best epoch's weights kept in memory),
           the test split scored with those weights at the end; no logging, checkpoints or pictures;
- project: seg.run.train.train(cfg), what `python train.py` runs after composing the config: the Trainer with
           the config's callbacks and loggers, then validate and test of best.ckpt, summary.json.

Interleaved (bare, project, bare, ...) `--repeats` times; `--epochs N` shortens both alike (the schedule follows).
Both train the same steps from the same initial weights in the same order, so they reach the same test IoU,
which the JSON reports for each. `--profile` also times the project's run by phase and by callback (every
Lightning hook, self time) and the bare loop by phase, and prints where the difference goes.

The last line printed is one JSON object. Examples:

    python scripts/bench.py                                              # the default config on this CPU
    python scripts/bench.py --device cuda --size 256 --precision bf16-mixed
    python scripts/bench.py --quiet-trainer                              # project without loggers/checkpoints
    python scripts/bench.py model.compile=true                           # any config override after the options
    python scripts/bench.py --end-to-end --repeats 3                     # the whole default run (18 epochs)
    python scripts/bench.py --end-to-end --epochs 4 --profile            # shorter, and where the time goes
    python scripts/bench.py --end-to-end experiment=compare_heads        # one job of the head study (8 epochs)
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from lightning.pytorch.profilers import Profiler

import seg.run.train
from seg.model.metrics import as_metric_input, segmentation_metrics
from seg.model.network import build_network
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
    parser.add_argument("--end-to-end", action="store_true", help="time whole runs: train() against a bare loop")
    parser.add_argument("--epochs", type=int, default=None, help="trainer.max_epochs (end to end; default: config's)")
    parser.add_argument("--profile", action="store_true", help="end to end: time the runs by phase and callback")
    parser.add_argument("--out", type=Path, default=None, help="end to end: keep the project's run directories here")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. data.batch_size=32")
    args = parser.parse_args()
    if not args.end_to_end and (args.epochs or args.profile or args.out):
        parser.error("--epochs, --profile and --out go with --end-to-end")
    if args.end_to_end and args.quiet_trainer:
        parser.error("--quiet-trainer is for the step mode: end to end, the project runs as train.py runs it")
    quiet_library_noise()
    L.seed_everything(0, workers=True, verbose=False)
    with tempfile.TemporaryDirectory() as tmp:
        if args.end_to_end:
            end_to_end(args, Path(tmp))
        else:
            steps(parser, args, Path(tmp))


def steps(parser: argparse.ArgumentParser, args: argparse.Namespace, tmp: Path) -> None:
    cfg = bench_config(args, tmp)
    epoch = len(training_loader(cfg))
    if args.warmup + args.steps > epoch:  # past an epoch the Trainer would validate and checkpoint in the timing
        parser.error(
            f"--warmup + --steps = {args.warmup + args.steps} is more than one epoch ({epoch} batches); use fewer steps"
        )
    results = {"bare": [], "project": [], "loader": []}
    for repeat in range(args.repeats):
        results["bare"].append(bare_steps_per_s(cfg, args))
        results["project"].append(project_steps_per_s(cfg, args, tmp / f"project{repeat}"))
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
    epoch = len(training_loader(cfg))  # also generates the dataset if it is not there yet, outside the timings
    if args.warmup:  # one-time costs (allocator, kernels) would otherwise fall on the first timed run alone
        warmup = min(args.warmup, epoch)
        bare_steps_per_s(cfg, argparse.Namespace(**{**vars(args), "warmup": 0, "steps": warmup}))
    out = args.out.resolve() if args.out else tmp / "runs"
    bare, project = [], []
    for repeat in range(args.repeats):
        bare.append(bare_run(cfg, args))
        project.append(project_run(cfg, out / f"project{repeat}", profile=args.profile))
        print(
            f"repeat {repeat + 1}/{args.repeats}: bare {bare[-1]['seconds']:.1f} s,"
            f" project {project[-1]['seconds']:.1f} s (train_seconds {project[-1]['train_seconds']:.1f})",
            flush=True,
        )

    bare_s = statistics.median(r["seconds"] for r in bare)
    project_s = statistics.median(r["seconds"] for r in project)
    print()
    print(f"{'':10}{'seconds (median)':>18}   all repeats")
    for name, runs in (("bare", bare), ("project", project)):
        median = statistics.median(r["seconds"] for r in runs)
        print(f"{name:10}{median:18.2f}   " + " ".join(f"{r['seconds']:.2f}" for r in runs))
    summary = {
        "mode": "end_to_end",
        "bare_seconds": round(bare_s, 3),
        "project_seconds": round(project_s, 3),
        "ratio": round(bare_s / project_s, 4),
        "bare_seconds_each": [round(r["seconds"], 3) for r in bare],
        "project_seconds_each": [round(r["seconds"], 3) for r in project],
        "ratio_each": [round(b["seconds"] / p["seconds"], 4) for b, p in zip(bare, project, strict=True)],
        "train_seconds_each": [p["train_seconds"] for p in project],  # summary.json's: Trainer.fit alone
        "epochs": int(cfg.trainer.max_epochs),
        "steps": project[-1]["steps"],
        "bare_steps": bare[-1]["steps"],
        "bare_test_iou": bare[-1]["test_iou"],
        "project_test_iou": project[-1]["test_iou"],
        "bare_val_iou": bare[-1]["val_iou"],
        "project_val_iou": project[-1]["val_iou"],
        "size": args.size,
        "precision": cfg.trainer.precision,
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "overrides": args.overrides,
    }
    if args.profile:
        summary["profile"] = print_profile(bare, project)
    print(json.dumps(summary))


class Phases:
    """Wall seconds per named phase: `with phases("validation"): ...` adds to `seconds["validation"]`."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            synchronize(self.device)
            self.seconds[name] += time.perf_counter() - start


def bare_run(cfg, args: argparse.Namespace) -> dict:
    """The run train() makes, as a plain PyTorch loop: same seed, network, loss, optimizer, schedule and batches."""
    device = torch.device(args.device)
    phase = Phases(device)
    start = time.perf_counter()
    with phase(STARTUP):
        L.seed_everything(cfg.seed, workers=True, verbose=False)  # as train() seeds, before anything is built
        head = instantiate(cfg.head)
        datamodule = build_data(cfg)
        net = build_network(cfg.model, head=head, in_channels=datamodule.resolved()["in_channels"]).to(device)
        train_loader, val_loader, test_loader = (
            datamodule.train_dataloader(),
            datamodule.val_dataloader(),
            datamodule.test_dataloader(),
        )
        epochs = int(cfg.trainer.max_epochs)
        optimizer = instantiate(cfg.optimizer)(params=net.parameters())
        total_steps = epochs * len(train_loader)  # Lightning's estimated_stepping_batches
        scheduler = instantiate(cfg.scheduler)(optimizer, total_steps=total_steps) if cfg.get("scheduler") else None
        bf16 = str(cfg.trainer.precision).startswith("bf16")
        autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else nullcontext
        torch.backends.cudnn.benchmark = bool(cfg.trainer.get("benchmark"))  # as the Trainer sets it
    best_iou, best_weights, steps = float("-inf"), None, 0
    for epoch in range(epochs):
        with phase("training steps"):
            train_loader.sampler.set_epoch(epoch)  # the project's EpochSampler: order and flips of this epoch
            net.train()
            for batch in train_loader:
                image = batch["image"].to(device, non_blocking=True)  # (B, C, H, W)
                mask = batch["mask"].to(device, non_blocking=True)  # (B, 1, H, W) {0, 1}
                valid = batch["valid"].to(device, non_blocking=True)  # (B, 1, H, W) bool: pixels that count
                with autocast():
                    loss = head.loss(net(image), mask, valid)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                steps += 1
        with phase("validation passes"):
            iou = bare_score(net, head, val_loader, device, autocast)
            if iou > best_iou:  # strictly better, as ModelCheckpoint decides
                best_iou, best_weights = iou, copy.deepcopy(net.state_dict())
    with phase("final validate + test"):
        net.load_state_dict(best_weights)
        test_iou = bare_score(net, head, test_loader, device, autocast)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "phases": dict(phase.seconds),
        "steps": steps,
        "val_iou": best_iou,
        "test_iou": test_iou,
    }


@torch.inference_mode()
def bare_score(net, head, loader, device: torch.device, autocast) -> float:
    """Dataset-level IoU of the head's decision (the project's metric objects, fed as validation feeds them)."""
    net.eval()
    metrics = segmentation_metrics("split").to(device)
    for batch in loader:
        mask, valid = batch["mask"].to(device), batch["valid"].to(device)
        with autocast():
            logits = net(batch["image"].to(device))  # (B, 1, H, W)
        metrics.update(*as_metric_input(head.predict(logits), mask, valid))
    return float(metrics.compute()["split/iou"])


def project_run(cfg, run_dir: Path, *, profile: bool) -> dict:
    """seg.run.train.train(cfg) into `run_dir`, timed whole; with `profile`, its Trainer gets a HookProfiler."""
    cfg = copy.deepcopy(cfg)
    cfg.paths.output_dir = str(run_dir)
    profiler = HookProfiler() if profile else None
    with handing_profiler(profiler):
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
    if profiler is not None:
        result["phases"] = profiler.breakdown(seconds)
    return result


@contextmanager
def handing_profiler(profiler: HookProfiler | None) -> Iterator[None]:
    """train() unchanged, but the Trainer its build() returns is profiled by `profiler`."""
    if profiler is None:
        yield
        return

    def build_profiled(cfg):
        module, datamodule, trainer = build(cfg)
        profiler.attach(trainer)
        return module, datamodule, trainer

    seg.run.train.build = build_profiled
    try:
        yield
    finally:
        seg.run.train.build = build


STARTUP = "startup, wrap-up (outside Trainer.fit/validate/test)"
SAVE = "save_checkpoint"  # Lightning's action around every Trainer.save_checkpoint: dump the state and write it


class HookProfiler(Profiler):
    """Self time (an action's time less the actions inside it) per (phase, owner) of every action Lightning profiles.

    Lightning wraps each hook it calls in `profile(action)`: `[Callback]<state key>.<hook>`, `[LightningModule]...`,
    `[Strategy]...training_step`, `run_training_batch`, `run_training_epoch`, `save_checkpoint`, the loaders'
    `..._next`. The owner is the callback's class for callback hooks; everything inside a `save_checkpoint` counts
    as that save, named by the callback that asked for it; the rest is the model and data ("steps") or, for the
    epoch loop's own time (logging, loop bookkeeping), "loops". The phase comes from the trainer's state.
    """

    def __init__(self) -> None:
        super().__init__()
        self.self_seconds: dict[tuple[str, str], float] = defaultdict(float)
        self.calls: dict[tuple[str, str], int] = defaultdict(int)
        self.stage_seconds: dict[str, float] = defaultdict(float)
        self._stack: list[list] = []  # [action, key, inherited, start, seconds of the actions inside]
        self.trainer: L.Trainer | None = None

    def attach(self, trainer: L.Trainer) -> None:
        """Profile `trainer`'s hooks, and time its fit, validate and test whole."""
        self.trainer = trainer
        trainer.profiler = self  # Lightning reads trainer.profiler at every hook
        for name in ("fit", "validate", "test"):
            setattr(trainer, name, self._timed(name, getattr(trainer, name)))

    def _timed(self, name: str, method):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.stage_seconds[name] += time.perf_counter() - start

        return timed

    def start(self, action_name: str) -> None:
        key, inherited = self._key(action_name)
        self._stack.append([action_name, key, inherited, time.perf_counter(), 0.0])

    def stop(self, action_name: str) -> None:
        action, key, inherited, start, inner = self._stack.pop()
        assert action == action_name, (action, action_name)
        elapsed = time.perf_counter() - start
        self.self_seconds[key] += elapsed - inner
        self.calls[key] += not inherited
        if self._stack:
            self._stack[-1][-1] += elapsed  # the enclosing action's inner time

    def _key(self, action: str) -> tuple[tuple[str, str], bool]:
        """(phase, owner), and whether the action only adds to an enclosing save."""
        phase = self._phase()
        for _, (outer_phase, outer), *_ in reversed(self._stack):
            if outer.endswith(SAVE):  # the hooks a save calls (on_save_checkpoint, state dicts) are the save's
                return (outer_phase, outer), True
        if action == SAVE:
            asking = next((k[1] for _, k, *_ in reversed(self._stack) if k[1] not in ("steps", "loops")), "Trainer")
            return (phase, f"{asking} {SAVE}"), False
        callback = re.match(r"\[Callback\](\w+)", action)
        if callback:
            return (phase, callback[1]), False
        return (phase, "loops" if action == "run_training_epoch" else "steps"), False

    def _phase(self) -> str:
        state = self.trainer.state
        if state.fn == "fit":
            return "fit: training" if state.stage == "train" else "fit: validation"
        return f"final {state.fn.value}"

    def breakdown(self, total: float) -> dict[str, float]:
        """Seconds by row of the comparison with the bare loop (print_profile), and per (phase, owner)."""
        rows: dict[str, float] = defaultdict(float)
        for (phase, owner), seconds in self.self_seconds.items():
            if phase.startswith("final"):
                rows["final validate + test"] += seconds
            elif owner in ("steps", "loops"):
                rows["training steps" if phase == "fit: training" else "validation passes"] += seconds
                if owner == "loops":
                    rows["  of which the epoch loop's own time (logging, bookkeeping)"] += seconds
            else:
                rows[f"callback {owner}"] += seconds
        tracked = sum(self.self_seconds.values())
        rows["final validate + test"] += sum(v for k, v in self.stage_seconds.items() if k != "fit") - sum(
            v for (phase, _), v in self.self_seconds.items() if phase.startswith("final")
        )
        fit_tracked = sum(v for (phase, _), v in self.self_seconds.items() if not phase.startswith("final"))
        rows["Trainer.fit set-up, teardown (not in any hook)"] = self.stage_seconds.get("fit", 0.0) - fit_tracked
        rows[STARTUP] = total - sum(self.stage_seconds.values())
        details = {
            f"{phase} | {owner} ({self.calls[(phase, owner)]} calls)": s
            for (phase, owner), s in self.self_seconds.items()
        }
        assert tracked <= total, (tracked, total, dict(self.stage_seconds), dict(self.self_seconds))
        return {**rows, **{f"detail: {k}": v for k, v in details.items()}}


ROWS = (
    STARTUP,
    "training steps",
    "  of which the epoch loop's own time (logging, bookkeeping)",
    "validation passes",
    "final validate + test",
    "Trainer.fit set-up, teardown (not in any hook)",
)


def print_profile(bare: list[dict], project: list[dict]) -> dict[str, dict[str, float]]:
    """Mean seconds per row over the repeats, project against bare, and the project's detail by phase and owner."""

    def mean(runs: list[dict], row: str) -> float:
        return statistics.fmean(r["phases"].get(row, 0.0) for r in runs)

    project_rows = sorted({row for r in project for row in r["phases"]})
    callbacks = sorted(
        (row for row in project_rows if row.startswith("callback ")), key=lambda row: -mean(project, row)
    )
    table = {}
    print()
    print(f"{'where the time goes, mean of the repeats':62}{'project s':>10}{'bare s':>10}{'difference':>11}")
    for row in (*ROWS, *callbacks, "total"):
        p = statistics.fmean(r["seconds"] for r in project) if row == "total" else mean(project, row)
        b = statistics.fmean(r["seconds"] for r in bare) if row == "total" else mean(bare, row)
        table[row.strip()] = {"project": round(p, 3), "bare": round(b, 3)}
        if row.startswith("  of which"):  # part of the row above; the bare loop has no such part
            print(f"{row:62}{p:10.2f}")
        else:
            print(f"{row:62}{p:10.2f}{b:10.2f}{p - b:11.2f}")
    print()
    print(f"{'project, by phase and owner (self time)':80}{'s':>8}")
    details = sorted((row for row in project_rows if row.startswith("detail: ")), key=lambda row: -mean(project, row))
    for row in details:
        print(f"{row.removeprefix('detail: '):80}{mean(project, row):8.2f}")
    return table


if __name__ == "__main__":
    main()
