"""`python scripts/bench.py --suite gpu`: every GPU figure of docs/benchmarks.md from one prepared command.

GPU machines are lent rarely and for minutes; this spends one lending measuring, within about 8 minutes:

- step:     project against bare steps/s at 64 and 256 px (trainer=gpu: bf16, channels_last, cudnn autotuning);
- precision, channels_last, compile: the bare loop with each switched, at 64 px;
- limit:    forward + backward + optimizer step on one batch that stays on the device, eager and compiled
            (mode reduce-overhead: CUDA graphs), at 64 and 256 px, in images/s: the ceiling of both loops;
- end to end: a short default run (2 epochs), project against the bare and the minimal loop;
- loader:   batches/s of the per-image loader (augment=flips) with 0 and N worker processes, and of the
            one-tensor loader (augment=device_flips);
- ddp:      train.py under trainer=ddp on every device present against one device (skipped with one device).

It writes `bench_gpu.json` and `bench_gpu.md` into `--out` (default outputs/bench). Without a GPU it says so in
one line and exits with status 3 (nothing measured). `--dry-run` runs every measurement for a couple of steps on
whatever device there is (the CPU here), so the command is known to work before a lending; its figures mean
nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import bench_loop
import torch

from seg.paths import PROJECT_DIR

NO_GPU = 3  # exit status: no CUDA device, nothing measured
GPU = ["trainer=gpu"]  # what a GPU run uses: bf16, channels_last, cudnn autotuning


def main(args: argparse.Namespace, *, compose_config: Callable) -> int:
    if not torch.cuda.is_available() and not args.dry_run:
        print("no CUDA device here: --suite gpu measures a GPU (add --dry-run to check the command on this CPU)")
        return NO_GPU
    dry = args.dry_run
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out = (args.out or PROJECT_DIR / "outputs" / "bench").resolve()
    out.mkdir(parents=True, exist_ok=True)
    suite = Suite(args, device, compose_config, dry=dry)
    started = time.perf_counter()
    for measure in (suite.steps, suite.limits, suite.switches, suite.end_to_end, suite.loaders, suite.ddp):
        measure()
        print(f"[{time.perf_counter() - started:.0f} s] {measure.__name__} done", flush=True)
    report = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "devices": torch.cuda.device_count() if device.type == "cuda" else 1,
        "torch": torch.__version__,
        "commit": _commit(),
        "dry_run": dry,
        "seconds": round(time.perf_counter() - started, 1),
        "rows": suite.rows,
    }
    (out / "bench_gpu.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "bench_gpu.md").write_text(markdown(report))
    print(markdown(report))
    print(json.dumps({"json": str(out / "bench_gpu.json"), "markdown": str(out / "bench_gpu.md")}))
    return 0


class Suite:
    """The measurements, each adding rows `{"group", "what", "value", "unit"}`; a failing one adds its error."""

    def __init__(self, args: argparse.Namespace, device: torch.device, compose_config: Callable, *, dry: bool):
        self.args, self.device, self.dry = args, device, dry
        self.compose_config = compose_config
        self.tmp = Path(tempfile.mkdtemp(prefix="bench_suite_"))
        self.warmup, self.timed = (1, 2) if dry else (10, 40)
        self.rows: list[dict] = []
        self.sizes = (32, 64) if dry else (64, 256)

    def _cfg(self, *overrides: str, size: int = 64, end_to_end: bool = False):
        args = argparse.Namespace(**{**vars(self.args), "size": size, "end_to_end": end_to_end, "epochs": None})
        args.warmup, args.steps = self.warmup, self.timed
        gpu = GPU if self.device.type == "cuda" else []
        small = ["data.source.counts={train: 256, val: 16, test: 16}"] if self.dry else []
        return self.compose_config(args, self.tmp, *gpu, *small, *overrides), args

    def _row(self, group: str, what: str, value, unit: str) -> None:
        self.rows.append({"group": group, "what": what, "value": value, "unit": unit})
        print(f"  {group:12} {what:48} {value} {unit}", flush=True)

    def _guarded(self, group: str, what: str, measure: Callable[[], float], unit: str) -> float | None:
        try:
            value = measure()
        except Exception as error:  # one failing measurement (a compile that does not work) leaves the others
            self._row(group, what, f"failed: {type(error).__name__}: {str(error).splitlines()[0][:200]}", "")
            return None
        self._row(group, what, round(value, 3), unit)
        return value

    def steps(self) -> None:
        import bench

        for size in self.sizes:
            cfg, args = self._cfg(size=size)
            args.repeats = 1 if self.dry else 3
            figures = bench.step_figures(cfg, args, self.tmp / f"steps{size}")
            self._row("step", f"{size} px bare", figures["bare_steps_per_s"], "steps/s")
            self._row("step", f"{size} px project", figures["project_steps_per_s"], "steps/s")
            self._row("step", f"{size} px project / bare (target >= 0.95)", figures["overhead_ratio"], "")

    def limits(self) -> None:
        modes = (None, "default", "reduce-overhead") if self.device.type == "cuda" else (None, "default")
        for size in self.sizes:
            cfg, _ = self._cfg(size=size)
            for mode in modes:
                self._guarded(
                    "limit",
                    f"{size} px, {'eager' if mode is None else 'compiled ' + mode}",
                    lambda cfg=cfg, mode=mode: bench_loop.limit_images_per_s(
                        cfg,
                        self.device,
                        warmup=self.warmup + (2 if mode else 0),
                        steps=self.timed,
                        compile_mode=mode,
                        backend="eager" if self.dry else "inductor",  # inductor on a CPU: minutes of C++ builds
                    ),
                    "images/s",
                )

    def switches(self) -> None:
        for what, overrides in (
            ("bf16 (trainer=gpu)", []),
            ("fp32", ["trainer.precision=32-true"]),
            ("channels_last off", ["model.channels_last=false"]),
            ("channels_last on", ["model.channels_last=true"]),
            ("compile on", ["model.compile=true"]),
        ):
            if self.dry and "model.compile=true" in overrides:  # inductor on a CPU: minutes of C++ builds
                self._row("bare 64 px", what, "skipped in the dry run", "")
                continue
            cfg, _ = self._cfg(*overrides)
            batch = cfg.data.batch_size
            self._guarded(
                "bare 64 px",
                what,
                lambda cfg=cfg, batch=batch: (
                    batch * bench_loop.steps_per_s(cfg, self.device, warmup=self.warmup, steps=self.timed)
                ),
                "images/s",
            )

    def end_to_end(self) -> None:
        import bench

        epochs = 1 if self.dry else 2
        cfg, args = self._cfg(f"trainer.max_epochs={epochs}", end_to_end=True)
        args.repeats, args.profile, args.warmup = 1, False, self.warmup
        figures = bench.end_to_end_figures(cfg, args, self.tmp / "end_to_end")
        for name in ("bare", "minimal", "project"):
            self._row("end to end", f"{epochs} epochs, {name}", figures[f"{name}_seconds"], "s")
        self._row("end to end", "bare / project", figures["ratio"], "")
        self._row("end to end", "minimal / project (target >= 0.95)", figures["minimal_ratio"], "")

    def loaders(self) -> None:
        workers = min(4, max(1, (os.cpu_count() or 2) - 1))
        for what, overrides in (
            ("per image (augment=flips), 0 workers", ["augment=flips", "data.num_workers=0"]),
            (f"per image (augment=flips), {workers} workers", ["augment=flips", f"data.num_workers={workers}"]),
            ("one tensor (augment=device_flips)", ["augment=device_flips"]),
        ):
            cfg, args = self._cfg(*overrides)
            import bench

            self._guarded("loader", what, lambda cfg=cfg, args=args: bench.loader_batches_per_s(cfg, args), "batches/s")

    def ddp(self) -> None:
        devices = torch.cuda.device_count() if self.device.type == "cuda" else (2 if self.dry else 1)
        if devices < 2:
            self._row("ddp", "not measured: one device", "-", "")
            return
        per_device = {}
        for n in (1, devices):
            per_device[n] = self._guarded("ddp", f"{n} device(s), train.py", lambda n=n: self._ddp_images_per_s(n),
                                          "images/s")  # fmt: skip
        if per_device[1] and per_device[devices]:
            self._row("ddp", f"{devices} devices / 1 device", round(per_device[devices] / per_device[1], 3), "")

    def _ddp_images_per_s(self, devices: int) -> float:
        run_dir = self.tmp / f"ddp{devices}"
        steps = 4 if self.dry else 60
        overrides = [
            "trainer=ddp" if devices > 1 else "trainer=gpu",
            f"trainer.devices={devices}",
            f"trainer.max_steps={steps}",
            f"paths.output_dir={run_dir}",
            f"hydra.run.dir={run_dir}",
            "~callbacks",
            "~logger",
        ]
        if self.device.type == "cpu":
            overrides += ["trainer.accelerator=cpu", "data.source.counts={train: 256, val: 16, test: 16}"]
            overrides += [f"data.root={self.tmp / 'ddp_data'}"]
        env = {**os.environ, "PYTHONPATH": str(PROJECT_DIR)}
        subprocess.run([sys.executable, "train.py", *overrides], cwd=PROJECT_DIR, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300)  # fmt: skip
        summary = json.loads((run_dir / "summary.json").read_text())
        batch = 16  # conf/data/synthetic.yaml, per process
        return summary["global_step"] * batch * devices / summary["train_seconds"]


def markdown(report: dict) -> str:
    lines = [
        f"GPU suite: {report['device']} x{report['devices']}, torch {report['torch']}, commit {report['commit']},"
        f" {report['seconds']} s" + (" (dry run: figures mean nothing)" if report["dry_run"] else ""),
        "",
        "| group | measurement | value | unit |",
        "|---|---|---:|---|",
    ]
    lines += [f"| {r['group']} | {r['what']} | {r['value']} | {r['unit']} |" for r in report["rows"]]
    return "\n".join(lines) + "\n"


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_DIR, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
