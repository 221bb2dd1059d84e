"""The claims table at the top of the atlas report: each claim in plain words, the test that decides it, its
numbers and its status, computed from whatever cells exist (a claim whose cells are missing is `untested`).

Statuses: supported (the declared test passes), refuted (the test says the opposite: a resolved difference
where equivalence was claimed, an equivalence or an opposite sign where a difference was), unresolved (neither),
untested (no runs). The rules are those of docs/results/atlas/preregistration.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from seg.study.atlas import (
    BASELINE,
    CONTROL,
    FIT_METRIC,
    LAST_IOU,
    PLAIN,
    PREDICTED_SHIFTS,
    TANH,
    Cell,
    best_to_last,
    equivalent,
    is_regime,
    metric_cell,
    significance,
    survives_tuned_threshold,
)
from seg.study.stats import MARGIN

SUPPORTED, REFUTED, UNRESOLVED, UNTESTED = "supported", "refuted", "unresolved", "untested"


@dataclass(frozen=True)
class Claim:
    claim: str
    test: str
    numbers: str
    status: str


def _delta(cell: Cell) -> str:
    s = cell.stats
    p = f"Holm p {cell.p_holm:.3g}" if cell.primary else f"t p {s['t_p']:.3g}"
    tost = f"TOST p {cell.tost['p']:.3g}" if cell.tost else "TOST n/a"
    return f"Δ {s['mean_diff']:+.4f}, t CI [{s['t_ci_low']:+.4f}, {s['t_ci_high']:+.4f}], {p}, {tost}, n {s['n']}"


def _tested(cell: Cell | None) -> bool:
    return cell is not None and cell.stats is not None and cell.stats["n"] >= 2 and not math.isnan(cell.stats["t_p"])


def no_difference(text: str, cell: Cell | None) -> Claim:
    """Equivalence claimed: TOST at the margin decides; a resolved difference refutes it."""
    test = f"TOST ±{MARGIN:g} (paired t); refuted by a resolved difference"
    if not _tested(cell):
        return Claim(text, test, "no runs", UNTESTED)
    status = SUPPORTED if equivalent(cell) else REFUTED if significance(cell) == 2 else UNRESOLVED
    return Claim(text, test, _delta(cell), status)


def difference(text: str, cell: Cell | None, sign: int = 0) -> Claim:
    """A difference claimed (sign -1: head worse, +1: better, 0: either): the cell's significance decides."""
    test = "paired t, both 95% CIs exclude 0" + (" (Holm over the primary family)" if cell and cell.primary else "")
    if not _tested(cell):
        return Claim(text, test, "no runs", UNTESTED)
    mean = cell.stats["mean_diff"]
    right_way = sign == 0 or (mean > 0) == (sign > 0)
    if significance(cell) == 2:
        status = SUPPORTED if right_way else REFUTED
    else:
        status = REFUTED if equivalent(cell) else UNRESOLVED
    return Claim(text, test, _delta(cell), status)


def find(cells: list[Cell], condition: str, optimizer: str, pair, *, primary: bool | None = None, setting=None):
    for cell in cells:
        if (cell.condition, cell.optimizer, cell.head, cell.against) != (condition, optimizer, *pair):
            continue
        if primary is not None and cell.primary != primary:
            continue
        if setting is not None and cell.setting != setting:
            continue
        return cell
    return None


def cell_claims(cells: list[Cell]) -> list[Claim]:
    claims = []
    for optimizer in ("adamw", "sgd"):
        primary = find(cells, PLAIN, optimizer, (TANH, BASELINE), primary=True)
        claims.append(
            no_difference(f"{optimizer}, plain data, each head at its own tuned lr: tanh_mse ≈ sigmoid_bce", primary)
        )
    for cell in cells:
        verdict = survives_tuned_threshold(cell)
        if cell.primary and verdict in ("survives", "gone", "not measured"):
            tuned = cell.metrics.get("test/iou@val_threshold")
            numbers = f"Δ at 0.5 {cell.stats['mean_diff']:+.4f}" + (
                f"; at the val-tuned threshold {tuned['mean_diff']:+.4f} [{tuned['t_ci_low']:+.4f}, {tuned['t_ci_high']:+.4f}]"
                if tuned
                else ""
            )
            status = {"survives": SUPPORTED, "gone": REFUTED}.get(verdict, UNTESTED)
            text = f"{cell.context}: the tanh_mse − sigmoid_bce gap at 0.5 survives at the val-tuned threshold"
            claims.append(
                Claim(text, "both CIs of the paired Δ of test/iou@val_threshold exclude 0, same sign", numbers, status)
            )
    shared = find(cells, PLAIN, "adamw", (TANH, BASELINE), setting="shared lr")
    claims.append(difference("adamw, shared lr: tanh_mse is worse than sigmoid_bce", shared, sign=-1))
    smse = find(cells, PLAIN, "adamw", (CONTROL, BASELINE), setting="shared lr")
    claims.append(no_difference("adamw, shared lr: sigmoid_mse ≈ sigmoid_bce", smse))
    for cell in cells:
        if cell.setting == "control":
            text = f"{cell.optimizer} control: {cell.head} at lr_scale {cell.scales[0]:g} vs {cell.against} at {cell.scales[1]:g} ({cell.why})"
            claims.append(
                no_difference(text + ": equal", cell) if cell.expect_equal else difference(text + ": differs", cell)
            )
    for cell in cells:
        if cell.interaction is not None and (cell.head, cell.against) == (TANH, BASELINE):
            claims.append(interaction_claim(cell))
    return claims + regime_claims(cells)


def regime_claims(cells: list[Cell]) -> list[Claim]:
    """Per regime arm (docs/results/regimes/preregistration.md), the folklore and what a bounded loss is expected
    to do late in training: win at the best checkpoint, win at the final weights, lose less between the two, end
    better calibrated, and fit its training labels less (memorise fewer flipped ones, the mechanism's first
    link). Only the first is in the regime family (Holm); the rest are secondary."""
    claims = []
    for cell in cells:
        if not (cell.primary and is_regime(cell.condition)):
            continue
        where = f"{cell.condition} ({cell.optimizer}, {cell.setting})"
        last = metric_cell(cell, LAST_IOU)
        claims += [
            difference(f"{where}, best checkpoint: tanh_mse beats sigmoid_bce", cell, sign=1),
            difference(f"{where}, final weights: tanh_mse beats sigmoid_bce", last, sign=1),
            difference(
                f"{where}: tanh_mse loses less than sigmoid_bce from its best checkpoint to its final weights"
                " (Δ final − Δ best > 0)",
                best_to_last(cell),
                sign=1,
            ),
            difference(
                f"{where}, final weights: tanh_mse is better calibrated (ECE lower)",
                metric_cell(cell, "last/test/ece"),
                sign=-1,
            ),
            difference(
                f"{where}, last epoch: tanh_mse fits its training labels less (train IoU lower; with flipped labels,"
                " it memorises fewer of them)",
                metric_cell(cell, FIT_METRIC),
                sign=-1,
            ),
        ]
        if "last/train/memorised" in cell.metrics:  # label-noise arms measured with scripts/memorisation.py
            claims.append(
                difference(
                    f"{where}, final weights: tanh_mse memorises fewer flipped training labels (share of flipped"
                    " pixels decided as their flipped label)",
                    metric_cell(cell, "last/train/memorised"),
                    sign=-1,
                )
            )
    return claims


def interaction_claim(cell: Cell) -> Claim:
    i = cell.interaction
    text = f"{cell.condition} changes the tanh_mse − sigmoid_bce gap ({cell.optimizer}, {cell.setting})"
    test = "interaction: condition Δ − plain Δ, 95% t CI" + (" paired by seed" if i["paired"] else " (Welch)")
    if math.isnan(i["ci_low"]):
        return Claim(text, test, "too few seeds", UNTESTED)
    numbers = f"{i['mean']:+.4f} [{i['ci_low']:+.4f}, {i['ci_high']:+.4f}], p {i['p']:.3g}, n {i['n']}"
    if i["ci_low"] > 0 or i["ci_high"] < 0:
        status = SUPPORTED
    elif i["ci_low"] > -MARGIN and i["ci_high"] < MARGIN:
        status = REFUTED  # the whole 95% interval inside the margin: no interaction of practical size
    else:
        status = UNRESOLVED
    return Claim(text, test, numbers, status)


def shift_claims(shifts: dict[str, dict[str, dict]]) -> list[Claim]:
    """shifts: optimizer -> seg.study.shift.fit_shifts; one claim per optimizer."""
    claims = []
    for optimizer, predicted in PREDICTED_SHIFTS.items():
        text = f"{optimizer}: one val-IoU curve, shifted in lr by " + ", ".join(
            f"{head} ×{c:g}" for head, c in predicted.items()
        )
        test = (
            "shared cubic in log lr with a per-head shift; 95% bootstrap CI over selection seeds covers the prediction"
        )
        fitted = shifts.get(optimizer, {})
        if not all(head in fitted for head in predicted):
            claims.append(Claim(text, test, "no lr grid", UNTESTED))
            continue
        inside = [fitted[h]["ci_low"] <= c <= fitted[h]["ci_high"] for h, c in predicted.items()]
        numbers = "; ".join(
            f"{h} ×{fitted[h]['shift']:.2f} [{fitted[h]['ci_low']:.2f}, {fitted[h]['ci_high']:.2f}]" for h in predicted
        )
        claims.append(Claim(text, test, numbers, SUPPORTED if all(inside) else REFUTED))
    return claims


def failure_claims(failure: dict[str, dict]) -> list[Claim]:
    """failure: condition label -> seg.study.failure.failure_tests."""
    if not failure:
        return [
            Claim(
                "rare objects: tanh_mse collapses more often than sigmoid_bce", "Fisher's exact", "no runs", UNTESTED
            ),
            Claim(
                "rare objects: stuck pixels explain the collapses",
                "sigmoid_mse collapses ≥ tanh_mse",
                "no runs",
                UNTESTED,
            ),
        ]
    claims = []
    for condition, tests in failure.items():
        t = tests["tanh_mse vs sigmoid_bce"]
        numbers = f"{t['k']}/{t['n']} vs {t['k_other']}/{t['n_other']}, Fisher p {t['fisher_p']:.3g}, Barnard p {t['barnard_p']:.3g}"
        worse = t["n"] and t["n_other"] and t["k"] / t["n"] > t["k_other"] / t["n_other"]
        status = (
            UNTESTED if not t["n"] or not t["n_other"] else SUPPORTED if worse and t["fisher_p"] < 0.05 else UNRESOLVED
        )
        claims.append(
            Claim(
                f"{condition}: tanh_mse collapses more often than sigmoid_bce",
                "Fisher's exact (two-sided)",
                numbers,
                status,
            )
        )
        s = tests["sigmoid_mse vs tanh_mse (one-sided: less)"]
        numbers = f"sigmoid_mse {s['k']}/{s['n']} vs tanh_mse {s['k_other']}/{s['n_other']}, one-sided Fisher p {s['fisher_p']:.3g}"
        verdict = s["stuck_pixel_explanation"]
        status = {"refuted": REFUTED, "not refuted": UNRESOLVED}.get(verdict, UNTESTED)
        claims.append(
            Claim(
                f"{condition}: stuck pixels explain the collapses",
                "sigmoid_mse collapses at least as often as tanh_mse",
                numbers,
                status,
            )
        )
    return claims
