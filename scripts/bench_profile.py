"""Where a project run's time goes: self time per phase and owner of every action Lightning profiles.

The profiler reaches train() the public way, as the Trainer's `profiler` argument from the config
(`+trainer.profiler={_target_: bench_profile.HookProfiler, dirpath: ...}`), and hands its figures back the way
Lightning's profilers do, as the report it writes at the end of each stage (`{stage}-profile.txt`, JSON here;
`read` loads the last one). Nothing of train() or the Trainer is replaced.
"""

from __future__ import annotations

import json
import re
import statistics
import time
from collections import defaultdict
from pathlib import Path

from bench_loop import STARTUP
from lightning.pytorch.profilers import Profiler

SAVE = "save_checkpoint"  # Lightning's action around every Trainer.save_checkpoint: dump the state and write it
FILENAME = "profile"


class HookProfiler(Profiler):
    """Self time (an action's time less the actions inside it) per (phase, owner) of every action Lightning profiles.

    Lightning wraps each hook it calls in `profile(action)`: `[Callback]<state key>.<hook>`, `[LightningModule]...`,
    `[Strategy]...training_step`, `run_training_batch`, `run_training_epoch`, `save_checkpoint`, the loaders'
    `..._next`. The owner is the callback's class for callback hooks; everything inside a `save_checkpoint` counts
    as that save, named by the callback that asked for it; the rest is the model and data ("steps") or, for the
    epoch loop's own time (logging, loop bookkeeping), "loops". The phase is the stage Lightning set the profiler
    up for (fit, validate, test) and, within fit, whether a validation is under way (between its
    `on_validation_start` and the module's `on_validation_end`). A stage is timed from its set-up to its report.
    """

    def __init__(self, dirpath: str | Path | None = None, filename: str = FILENAME) -> None:
        super().__init__(dirpath=dirpath, filename=filename)
        self.self_seconds: dict[str, float] = defaultdict(float)  # "phase|owner" -> seconds
        self.calls: dict[str, int] = defaultdict(int)
        self.stage_seconds: dict[str, float] = defaultdict(float)
        self._stack: list[list] = []  # [action, key, inherited, start, seconds of the actions inside]
        self._validating = False
        self._stage_start = 0.0

    def setup(self, stage: str, local_rank: int | None = None, log_dir: str | None = None) -> None:
        super().setup(stage, local_rank, log_dir)
        self._stage_start = time.perf_counter()

    def start(self, action_name: str) -> None:
        if action_name.endswith(".on_validation_start"):
            self._validating = True
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
        if action_name.startswith("[LightningModule]") and action_name.endswith(".on_validation_end"):
            self._validating = False

    def _key(self, action: str) -> tuple[str, bool]:
        """ "phase|owner", and whether the action only adds to an enclosing save."""
        phase = self._phase()
        for _, outer, *_ in reversed(self._stack):
            if outer.endswith(SAVE):  # the hooks a save calls (on_save_checkpoint, state dicts) are the save's
                return outer, True
        if action == SAVE:
            owners = [k.split("|")[1] for _, k, *_ in reversed(self._stack)]
            asking = next((o for o in owners if o not in ("steps", "loops")), "Trainer")
            return f"{phase}|{asking} {SAVE}", False
        callback = re.match(r"\[Callback\](\w+)", action)
        if callback:
            return f"{phase}|{callback[1]}", False
        return f"{phase}|{'loops' if action == 'run_training_epoch' else 'steps'}", False

    def _phase(self) -> str:
        stage = str(getattr(self._stage, "value", self._stage))
        if stage != "fit":
            return f"final {stage}"
        return "fit: validation" if self._validating else "fit: training"

    def summary(self) -> str:
        stage = str(getattr(self._stage, "value", self._stage))
        self.stage_seconds[stage] += time.perf_counter() - self._stage_start
        return json.dumps({"self_seconds": self.self_seconds, "calls": self.calls, "stage_seconds": self.stage_seconds})


def read(run_dir: Path) -> dict:
    """The figures of the last stage's report in `run_dir` (each report holds every stage so far)."""
    reports = sorted(run_dir.glob(f"*-{FILENAME}.txt"), key=lambda p: p.stat().st_mtime)
    return json.loads(reports[-1].read_text())


def breakdown(figures: dict, total: float) -> dict[str, float]:
    """Seconds by row of the comparison with the bare loop (print_profile), and per (phase, owner)."""
    self_seconds, calls, stage_seconds = figures["self_seconds"], figures["calls"], figures["stage_seconds"]
    rows: dict[str, float] = defaultdict(float)
    for key, seconds in self_seconds.items():
        phase, owner = key.split("|")
        if phase.startswith("final"):
            rows["final validate + test"] += seconds
        elif owner in ("steps", "loops"):
            rows["training steps" if phase == "fit: training" else "validation passes"] += seconds
            if owner == "loops":
                rows["  of which the epoch loop's own time (logging, bookkeeping)"] += seconds
        else:
            rows[f"callback {owner}"] += seconds
    final_tracked = sum(v for k, v in self_seconds.items() if k.startswith("final"))
    rows["final validate + test"] += sum(v for k, v in stage_seconds.items() if k != "fit") - final_tracked
    fit_tracked = sum(v for k, v in self_seconds.items() if not k.startswith("final"))
    rows["Trainer.fit set-up, teardown (not in any hook)"] = stage_seconds.get("fit", 0.0) - fit_tracked
    rows[STARTUP] = total - sum(stage_seconds.values())
    details = {f"{key.replace('|', ' | ')} ({calls[key]} calls)": s for key, s in self_seconds.items()}
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
