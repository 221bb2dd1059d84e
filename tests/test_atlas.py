"""The atlas renderer on fabricated sweep folders with known numbers: lr selection, paired cells, Holm, gaps."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from seg.data.generate import SyntheticSource
from seg.study.atlas import atlas_cells, best_scales, holm, load_runs, lr_grid, verdict
from seg.study.atlas_conditions import condition_facts
from seg.study.atlas_report import lr_shifts
from seg.study.claims import cell_claims, failure_claims, shift_claims
from seg.study.failure import failure_table, failure_tests, summarize

BCE = np.array([0.80, 0.81, 0.79, 0.82, 0.80, 0.81])
TANH = BCE + [0.010, 0.012, 0.011, 0.009, 0.010, 0.011]  # a large, consistent gain: mean +0.0105
SMSE = BCE + [0.003, -0.004, 0.001, -0.002, 0.004, -0.001]  # no effect
FLIPS_BCE = np.array([0.70, 0.72, 0.71, 0.69, 0.70, 0.71])
FLIPS_TANH = FLIPS_BCE + [0.006, 0.001, 0.007, 0.002, 0.005, 0.002]  # paired-t p = 0.0129 alone
SEEDS = range(10, 16)
LR = {"adamw": 6e-3, "sgd": 0.1}


class Sweep:
    def __init__(self, root, experiment):
        self.root, self.experiment, self.count = root, experiment, 0
        root.mkdir(parents=True)
        (root / "multirun.yaml").write_text(
            yaml.safe_dump({"hydra": {"overrides": {"task": [f"experiment={experiment}"]}}})
        )

    def job(
        self,
        head,
        seed,
        *,
        scale=1.0,
        condition=None,
        val=None,
        test=None,
        noise=None,
        model=None,
        csv=None,
        extra=None,
        optimizer=None,
        epochs=6,
        last_lr=None,
        folder=None,
    ):
        job = self.root / str(self.count)
        self.count += 1
        (job / ".hydra").mkdir(parents=True)
        overrides = [f"head={head}", f"seed={seed}", f"lr_scale={scale:g}", f"experiment={self.experiment}"]
        overrides += [f"condition={condition}"] if condition else []
        overrides += [f"model={model}"] if model else []
        overrides += [f"optimizer={optimizer}"] if optimizer else []
        overrides += [f"last_layer_lr_scale={last_lr:g}"] if last_lr else []
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        if test is None and val is None:
            return  # died before its summary
        summary = {
            "head": head,
            "seed": seed,
            "val/iou": test if val is None else val,
            "test/iou": val if test is None else test,
            "train_seconds": 60.0,
            "global_step": 120,
            "commit": "abc1234",
            **(extra or {}),
        }
        (job / "summary.json").write_text(json.dumps(summary))
        if csv:  # {column: {step: value}}: the run's metrics.csv
            (job / "csv").mkdir()
            steps = sorted({step for column in csv.values() for step in column})
            rows = ["step," + ",".join(csv)] + [
                f"{step}," + ",".join(str(csv[c].get(step, "")) for c in csv) for step in steps
            ]
            (job / "csv" / "metrics.csv").write_text("\n".join(rows) + "\n")
        data = {
            "root": folder or str(self.root / "no-data"),
            "batch_size": 16,
            # a folder dataset (real images, scripts/prepare.py) has no generated source
            "source": None if folder else {"size": 32, "counts": {"train": 320, "val": 200, "test": 200}},
            "label_noise": noise,
        }
        config = {
            "optimizer": {"lr": LR.get(optimizer or "adamw", 0.1) * scale},
            "data": data,
            "trainer": {"max_epochs": epochs, "check_val_every_n_epoch": 2},
        }
        (job / "config.yaml").write_text(yaml.safe_dump(config))


@pytest.fixture
def atlas(tmp_path):
    selection = Sweep(tmp_path / "atlas_lr", "atlas_lr")
    for seed in (0, 1):
        for head, at_01, at_1 in (("sigmoid_bce", 0.70, 0.80), ("tanh_mse", 0.75, 0.79), ("sigmoid_mse", 0.82, 0.78)):
            selection.job(head, seed, scale=0.1, val=at_01 + 0.001 * seed, test=0.1)  # test must not matter
            selection.job(head, seed, scale=1.0, val=at_1 + 0.001 * seed, test=0.1)
    confirm = Sweep(tmp_path / "atlas_confirm", "atlas_confirm")
    for i, seed in enumerate(SEEDS):
        for head, values in (("sigmoid_bce", BCE), ("tanh_mse", TANH), ("sigmoid_mse", SMSE)):
            confirm.job(head, seed, test=values[i])
        if i < 3:  # sigmoid_mse at its chosen lr_scale 0.1: three of six seeds ran
            confirm.job("sigmoid_mse", seed, scale=0.1, test=SMSE[i] + 0.01)
    data = Sweep(tmp_path / "atlas_data", "atlas_data")
    flips = {
        "_target_": "seg.data.label_noise.LabelNoise",
        "level": 1.0,
        "jitter": 0.0,
        "drop": 0.0,
        "flip": 0.1,
        "seed": 0,
    }
    for i, seed in enumerate(SEEDS):
        data.job("sigmoid_bce", seed, condition="flips", test=FLIPS_BCE[i], noise=flips)
        data.job("tanh_mse", seed, condition="flips", test=FLIPS_TANH[i], noise=flips)
    data.job("tanh_mse", 16, condition="flips")  # failed
    return [selection.root, confirm.root, data.root]


def cells_by_name(cells):
    return {(c.context, c.comparison): c for c in cells}


def test_each_heads_lr_is_picked_on_mean_val_iou_of_the_selection_seeds(atlas):
    grid = lr_grid(load_runs(atlas))
    assert {(p.head, p.lr_scale): p.lr for p in grid}[("sigmoid_mse", 0.1)] == pytest.approx(6e-4)
    assert best_scales(grid) == {
        ("adamw", "sigmoid_bce"): 1.0,
        ("adamw", "tanh_mse"): 1.0,
        ("adamw", "sigmoid_mse"): 0.1,
    }


def test_cells_are_paired_by_seed_on_measurement_runs_only(atlas):
    cells = cells_by_name(atlas_cells(load_runs(atlas)))
    shared = cells[("plain · adamw · shared lr", "tanh_mse − sigmoid_bce")].stats
    assert shared["n"] == 6 and shared["mean_diff"] == pytest.approx(0.0105)
    from scipy import stats

    assert shared["t_p"] == pytest.approx(stats.ttest_rel(TANH, BCE).pvalue)
    matched = cells[("plain · adamw · matched lr", "sigmoid_mse − sigmoid_bce")]
    assert matched.scales == (0.1, 1.0) and matched.stats["n"] == 3  # only the seeds both sides ran
    assert matched.stats["mean_diff"] == pytest.approx(np.mean(SMSE[:3] + 0.01 - BCE[:3]))
    assert any("lr_scale=0.1 head=sigmoid_mse" in item for item in matched.missing)  # the command that fills it
    # tanh_mse and sigmoid_bce both chose the shared lr: no separate matched cell (it would count twice in Holm)
    assert ("plain · adamw · matched lr", "tanh_mse − sigmoid_bce") not in cells


def test_holm_by_hand():
    assert holm([0.01, 0.04, 0.03, 0.2]) == pytest.approx([0.04, 0.09, 0.09, 0.2])
    assert holm([0.5]) == [0.5]
    assert holm([0.3, 0.3]) == [0.6, 0.6]


def test_holm_corrects_the_declared_primary_family_only(atlas):
    """Primary: tanh_mse − sigmoid_bce at the tuned rates (both heads chose lr_scale 1 here, so the shared-lr cells
    of plain and flips); every other cell is secondary, with its uncorrected p."""
    cells = atlas_cells(load_runs(atlas))
    family = {(c.context, c.comparison) for c in cells if c.p_holm == c.p_holm}
    assert family == {
        ("plain · adamw · shared lr", "tanh_mse − sigmoid_bce"),
        ("flips · adamw · shared lr", "tanh_mse − sigmoid_bce"),
    }
    by_name = cells_by_name(cells)
    plain = by_name[("plain · adamw · shared lr", "tanh_mse − sigmoid_bce")]
    flips = by_name[("flips · adamw · shared lr", "tanh_mse − sigmoid_bce")]
    assert flips.stats["t_p"] == pytest.approx(0.01287, abs=1e-4)
    assert [plain.p_holm, flips.p_holm] == pytest.approx(holm([plain.stats["t_p"], flips.stats["t_p"]]))
    assert verdict(flips).startswith("tanh_mse better by 0.0038 (Holm p = 0.0129")
    no_effect = by_name[("plain · adamw · shared lr", "sigmoid_mse − sigmoid_bce")]
    assert no_effect.p_holm != no_effect.p_holm and not no_effect.primary
    assert verdict(no_effect).startswith("unresolved") or verdict(no_effect).startswith("equivalent")
    # without a selection grid no lr is tuned: nothing is primary, the flips cell reports its uncorrected p
    alone = cells_by_name(atlas_cells(load_runs(atlas[2:])))[("flips · adamw · shared lr", "tanh_mse − sigmoid_bce")]
    assert not alone.primary and verdict(alone) == "tanh_mse better by 0.0038 (p, uncorrected = 0.0129)"


def test_rendered_report_names_every_number_gap_and_failure(atlas, tmp_path):
    from scripts.atlas import main

    out = tmp_path / "rendered"
    report = main([*map(str, atlas), "--out", str(out)]).read_text()
    assert (out / "heatmap.png").stat().st_size > 10_000 and (out / "learning_rates.png").stat().st_size > 10_000
    assert "| plain | adamw | shared lr (1 / 1) P | tanh_mse − sigmoid_bce | 6 | +0.0105*" in report
    assert "python train.py -m experiment=atlas_confirm optimizer=adamw lr_scale=0.1 head=sigmoid_mse" in report
    assert "no summary.json (failed or unfinished)" in report and "seed 16" in report
    assert "abc1234" in report and "32 px images, 320 training images" in report
    # sigmoid_bce and tanh_mse peak at the grid's largest rate (1), sigmoid_mse below it (0.1)
    assert "its peak may lie above (adamw sigmoid_bce, adamw tanh_mse)" in report
    assert "| adamw | sigmoid_bce | 1 | 0.006 | 2 | 0.8005 | 0.0007 | ◀ top |" in report
    assert "| adamw | sigmoid_mse | 0.1 | 0.0006 | 2 | 0.8205 | 0.0007 | ◀ |" in report
    assert "`python train.py -m experiment=atlas_data`" in report
    cells = json.loads((out / "cells.json").read_text())
    assert {c["comparison"] for c in cells} == {
        "tanh_mse − sigmoid_bce",
        "sigmoid_mse − sigmoid_bce",
        "tanh_mse − sigmoid_mse",
    }


def test_condition_facts_are_measured_on_the_data_the_run_read(tmp_path, atlas):
    root = tmp_path / "flipsdata"
    SyntheticSource(seed=0, counts={"train": 30, "val": 2, "test": 10}, size=32).ensure(root)
    run = next(r for r in load_runs(atlas) if r.condition == "flips" and r.summary)
    config = yaml.safe_load((run.path / "config.yaml").read_text())
    config["data"]["root"] = str(root)
    (run.path / "config.yaml").write_text(yaml.safe_dump(config))
    facts = condition_facts(run)
    from seg.data.synthetic import SyntheticStyle, generate_sample

    masks = [generate_sample(0, 2_000_000 + i, SyntheticStyle(size=32))[1] for i in range(10)]
    assert facts["foreground"] == pytest.approx(np.mean([m.mean() for m in masks]))
    assert 0 < facts["threshold_iou"] < 0.6
    assert facts["changed"] == pytest.approx(0.1, abs=0.02)  # flip 0.1 of the training pixels
    assert 0.85 < facts["foreground_kept"] < 0.95


def test_controls_are_tost_tested_when_the_theory_says_equal_and_t_tested_otherwise(tmp_path):
    arm = Sweep(tmp_path / "atlas_controls", "atlas_controls")
    for i, seed in enumerate(SEEDS):
        arm.job("sigmoid_mse", seed, test=SMSE[i])
        arm.job("control/tanh_half", seed, test=SMSE[i] + [0.001, -0.001, 0.0005, 0.0, -0.0005, 0.001][i])
        arm.job("sigmoid_mse", seed, model="unet_last_init2", test=SMSE[i] - 0.02 - 0.001 * i)
    cells = cells_by_name(atlas_cells(load_runs([arm.root])))
    equal = cells[("plain · adamw · control", "tanh_half − sigmoid_mse")]
    assert equal.expect_equal and equal.tost["equivalent"] and verdict(equal).startswith("equivalent within ±0.005")
    init = cells[("plain · adamw · control", "sigmoid_mse@unet_last_init2 − sigmoid_mse")]
    assert init.expect_equal is False and init.stats["mean_diff"] == pytest.approx(-0.0225)
    assert verdict(init).startswith("sigmoid_mse@unet_last_init2 worse by 0.0225 (p, uncorrected")
    missing = cells[("plain · adamw · control", "sigmoid2_brier − tanh_mse")].missing
    assert any("experiment=atlas_controls optimizer=adamw lr_scale=1 head=control/sigmoid2_brier" in m for m in missing)
    assert any(
        m.startswith("tanh_mse has 0 of 6")
        and "experiment=atlas_controls optimizer=adamw lr_scale=1 head=tanh_mse" in m
        for m in cells[("plain · adamw · control", "tanh_mse − sigmoid_mse@unet_last_init2")].missing
    )
    claims = {c.claim: c for c in cell_claims(list(cells.values()))}
    from scripts.atlas import main

    report = main([str(arm.root), "--out", str(tmp_path / "rendered")]).read_text()
    assert "| plain | adamw | control (1 / 1) | tanh_half − sigmoid_mse | 6 |" in report
    assert (
        claims[
            "adamw control: tanh_half at lr_scale 1 vs sigmoid_mse at 1 (4 x sigmoid_mse; Adam divides a constant factor out): equal"
        ].status
        == "supported"
    )


def test_failure_arm_counts_collapses_escape_steps_and_tests_the_stuck_pixel_prediction(tmp_path):
    arm = Sweep(tmp_path / "atlas_failure", "atlas_failure")
    collapsed = {"sigmoid_bce": 0, "tanh_mse": 8, "sigmoid_mse": 0}  # of 30: sigmoid_mse never collapses
    for head, k in collapsed.items():
        for seed in range(100, 130):
            failed = seed - 100 < k
            recall = {10: 0.0, 20: 0.0 if failed else 0.3, 30: 0.0 if failed else 0.7, 40: 0.0 if failed else 0.9}
            stuck = {10: 0.01, 20: 0.02, 30: 0.02, 40: 0.03}
            arm.job(head, seed, condition="rare", epochs=18, val=0.5, test=0.0 if failed else 0.6 + 0.001 * seed,
                    csv={"train/foreground_recall": recall, "train/stuck_fraction": stuck,
                         "train/stuck_of_wrong": stuck})  # fmt: skip
    runs = load_runs([arm.root])
    table = failure_table(runs)
    assert list(table) == ["rare, 18 epochs"]
    by_head = table["rare, 18 epochs"]
    tanh = summarize(by_head["tanh_mse"])
    assert (tanh["n"], tanh["collapsed"], tanh["escaped"], tanh["median_escape_step"]) == (30, 8, 22, 30)
    assert tanh["stuck_fraction"] == pytest.approx(0.03)  # the last quarter of 4 logged steps: the last row
    tests = failure_tests(by_head)
    from scipy import stats

    assert tests["tanh_mse vs sigmoid_bce"]["fisher_p"] == pytest.approx(stats.fisher_exact([[8, 22], [0, 30]]).pvalue)
    stuck = tests["sigmoid_mse vs tanh_mse (one-sided: less)"]
    assert stuck["fisher_p"] < 0.05 and stuck["stuck_pixel_explanation"] == "refuted"
    claims = {c.claim: c.status for c in failure_claims({"rare, 18 epochs": tests})}
    assert claims == {
        "rare, 18 epochs: tanh_mse collapses more often than sigmoid_bce": "supported",
        "rare, 18 epochs: stuck pixels explain the collapses": "refuted",
    }
    cell = cells_by_name(atlas_cells(runs))[("rare, 18 epochs · adamw · shared lr", "tanh_mse − sigmoid_bce")]
    assert cell.collapse["k"] == 8 and cell.collapse["given_success"]["n"] == 22
    assert cell.collapse["given_success"]["mean_diff"] == pytest.approx(0.0)
    assert len(cell.seeds) == 30  # per-seed values travel with the cell (cells.json, the report's tables)


def test_lr_shift_is_fitted_on_the_mechanism_grid(tmp_path):
    grid = Sweep(tmp_path / "atlas_mechanism", "atlas_mechanism")
    scales = [2 ** (k / 2) for k in range(-8, 4)]
    for head, c in (("sigmoid_bce", 1.0), ("tanh_mse", 0.5), ("sigmoid_mse", 2.0)):
        for seed in range(3):
            for scale in scales:
                x = np.log(scale / c)  # each head's curve, peaking at lr_scale c
                grid.job(head, seed, scale=scale, optimizer="sgd", val=0.8 - 0.05 * x**2 + 0.001 * seed, test=0.1)
    shifts = lr_shifts(load_runs([grid.root]))
    assert shifts["sgd"]["tanh_mse"]["shift"] == pytest.approx(0.5, rel=0.02)
    assert shifts["sgd"]["sigmoid_mse"]["shift"] == pytest.approx(2.0, rel=0.02)
    claims = {c.claim.split(":")[0]: c.status for c in shift_claims(shifts)}
    assert claims == {"sgd": "supported", "adamw": "untested"}
    # the grid's upward extension picks tuned rates but never enters the declared fit
    top = Sweep(tmp_path / "atlas_mechanism_top", "atlas_mechanism_top")
    for head in ("sigmoid_bce", "tanh_mse", "sigmoid_mse"):
        for seed in range(3):
            top.job(head, seed, scale=8.0, optimizer="sgd", val=0.95 if head == "tanh_mse" else 0.1, test=0.1)
    runs = load_runs([grid.root, top.root])
    assert lr_shifts(runs)["sgd"]["tanh_mse"]["shift"] == pytest.approx(shifts["sgd"]["tanh_mse"]["shift"])
    assert best_scales(lr_grid(runs))[("sgd", "tanh_mse")] == 8.0


def test_the_exact_control_steps_the_last_layer_by_its_own_lr_and_names_its_command(tmp_path):
    """sigmoid_mse with model=unet_last_init2 and last_layer_lr_scale=2 is tanh_mse exactly under AdamW: a control
    declared equal (TOST), whose runs are told apart from the init-only arm and filled by their own command."""
    arm = Sweep(tmp_path / "atlas_controls", "atlas_controls")
    for i, seed in enumerate(SEEDS):
        arm.job("tanh_mse", seed, test=SMSE[i])
        arm.job("sigmoid_mse", seed, model="unet_last_init2", last_lr=2, test=SMSE[i] + 0.0002 * (-1) ** i)
        arm.job("sigmoid_mse", seed, model="unet_last_init2", test=SMSE[i] - 0.02)
    cells = cells_by_name(atlas_cells(load_runs([arm.root])))
    exact = cells[("plain · adamw · control", "sigmoid_mse@unet_last_init2@last_lr2 − tanh_mse")]
    assert exact.expect_equal and exact.tost["equivalent"] and exact.stats["n"] == 6
    init = cells[("plain · adamw · control", "tanh_mse − sigmoid_mse@unet_last_init2")]
    assert init.stats["mean_diff"] == pytest.approx(0.02)  # the init-only runs, not the exact control's
    alone = cells[("plain · adamw · control", "sigmoid_mse@last_lr2 − sigmoid_mse")]
    assert any("head=sigmoid_mse last_layer_lr_scale=2" in m for m in alone.missing)


def test_a_regime_arm_is_its_own_condition_family_and_interaction_with_best_and_last_weights(tmp_path, atlas):
    """experiment=regime_small: a condition named `regime small`, at the tuned lr (both heads' is 1 here), its
    primary cell Holm-corrected in a family of its own, its interaction with the plain cell, the final weights'
    metrics beside the best checkpoint's, and the schedule criteria read from each seed's curves."""
    regime = Sweep(tmp_path / "regime_small", "regime_small")
    for i, seed in enumerate(SEEDS):
        for head, values in (("sigmoid_bce", BCE - 0.1), ("tanh_mse", TANH - 0.09)):
            last = {"last/test/iou": values[i] - 0.05, "last/test/ece": 0.02 + 0.001 * i, "last/test/brier": 0.05}
            regime.job(head, seed, test=values[i], extra=last)
            rows = ["epoch,step,val/iou,train/iou", "9,39,0.6,", "9,39,,0.6", "19,79,0.7,", "19,79,,0.75"]
            rows += ["29,119,0.68,", "29,119,,0.9", "30,120,0.7,"]  # the best checkpoint validated after fit
            (regime.root / str(regime.count - 1) / "csv").mkdir()
            (regime.root / str(regime.count - 1) / "csv" / "metrics.csv").write_text("\n".join(rows) + "\n")
    cells = atlas_cells(load_runs([*atlas, regime.root]))
    by_name = cells_by_name(cells)
    cell = by_name[("regime small · adamw · shared lr", "tanh_mse − sigmoid_bce")]
    assert cell.primary and cell.p_holm == pytest.approx(cell.stats["t_p"])  # a family of one
    plain = by_name[("plain · adamw · shared lr", "tanh_mse − sigmoid_bce")]
    assert plain.p_holm != cell.p_holm  # not in the atlas's family
    assert cell.interaction["mean"] == pytest.approx((0.0105 + 0.01) - 0.0105)  # paired: the same seeds ran both
    assert cell.metrics["last/test/iou"]["mean_diff"] == pytest.approx(0.0205)
    from scripts.atlas import main

    report = main([*map(str, atlas), str(regime.root), "--out", str(tmp_path / "rendered")]).read_text()
    assert "## Best checkpoint and final weights" in report
    assert "| regime small | sigmoid_bce | 1 | 6 | 0/6 | 6/6 | 6/6 | 19 | 0.0200 | +0.1500 |  |" in report
    assert "![val and train IoU per epoch" in report and (tmp_path / "rendered" / "regime_curves.png").stat().st_size
    missing = {m for c in cells for m in c.missing if "regime_small" in m}
    assert missing == {  # sigmoid_mse did not run; its tuned lr_scale is 0.1
        "sigmoid_mse has 0 of 6 seeds: python train.py -m experiment=regime_small lr_scale=0.1 head=sigmoid_mse"
        " hydra.sweep.dir=multirun/regime_small/sigmoid_mse"
    }


def test_a_real_image_arm_rendered_alone_describes_its_folder_dataset(tmp_path):
    """The ISBI and CamVid arms read prepared folders, not generated images: their pilots render on their own."""
    from scripts.atlas import main

    pilots = [Sweep(tmp_path / f"pilot_{head}", "regime_isbi") for head in ("sigmoid_bce", "tanh_mse")]
    for sweep in pilots:
        sweep.job(sweep.root.name.removeprefix("pilot_"), 0, test=0.67, folder="data/isbi2012", epochs=400)
    report = main([*(str(s.root) for s in pilots), "--out", str(tmp_path / "rendered")]).read_text()
    assert "The folder dataset `data/isbi2012`, batch 16, 400 epochs (120 steps;" in report
    assert "validation every 2 epochs on its val split (best.ckpt by val IoU), test on its test split." in report


def test_a_regime_arms_claims_read_the_best_checkpoint_the_final_weights_and_their_difference(tmp_path, atlas):
    """Per regime arm: the folklore at the best checkpoint (Holm, regime family), at the final weights, the
    best-to-final loss of each head (a paired contrast of the two Δs) and the final weights' ECE, with numbers
    computed here by hand."""
    from scipy import stats as scipy_stats

    from seg.study.atlas import best_to_last, metric_cell

    regime = Sweep(tmp_path / "regime_small", "regime_small")
    i = np.arange(6)
    bce_best = 0.80 + 0.001 * i
    tanh_best = bce_best + 0.01 + 0.001 * (-1) ** i
    bce_last, tanh_last = bce_best - 0.04 - 0.002 * i, tanh_best - 0.01  # sigmoid_bce memorises more
    bce_ece, tanh_ece = 0.05 + 0.001 * i, np.full(6, 0.02)
    bce_fit, tanh_fit = 0.60 + 0.002 * i, np.full(6, 0.59)  # train IoU on the training labels: bce fits more
    bce_memorised = 0.30 + 0.01 * i  # scripts/memorisation.py's share of flipped pixels, beside summary.json
    for k, seed in enumerate(SEEDS):
        bce = {"last/test/iou": bce_last[k], "last/test/ece": bce_ece[k], "train/iou": bce_fit[k]}
        regime.job("sigmoid_bce", seed, test=bce_best[k], extra=bce)
        memorised = {"last/train/memorised": bce_memorised[k], "last/train/kept_right": 0.9}
        (regime.root / str(regime.count - 1) / "memorisation.json").write_text(json.dumps(memorised))
        tanh = {"last/test/iou": tanh_last[k], "last/test/ece": tanh_ece[k], "train/iou": tanh_fit[k]}
        regime.job("tanh_mse", seed, test=tanh_best[k], extra=tanh)
        memorised = {"last/train/memorised": 0.20, "last/train/kept_right": 0.9}
        (regime.root / str(regime.count - 1) / "memorisation.json").write_text(json.dumps(memorised))
    cells = atlas_cells(load_runs([*atlas, regime.root]))
    cell = cells_by_name(cells)[("regime small · adamw · shared lr", "tanh_mse − sigmoid_bce")]
    contrast = (tanh_last - bce_last) - (tanh_best - bce_best)  # 0.03 + 0.002 i
    moved = best_to_last(cell)
    assert moved.stats["mean_diff"] == pytest.approx(contrast.mean()) == pytest.approx(0.035)
    assert moved.stats["t_p"] == pytest.approx(scipy_stats.ttest_1samp(contrast, 0).pvalue)
    last = metric_cell(cell, "last/test/iou")
    assert last.seeds["12"] == pytest.approx((tanh_last[2], bce_last[2]))
    assert last.tost["p"] > 0.05  # Δ ≈ +0.045: far outside ±0.005
    claims = {c.claim: c for c in cell_claims(cells)}
    where = "regime small (adamw, shared lr)"
    assert claims[f"{where}, best checkpoint: tanh_mse beats sigmoid_bce"].status == "supported"
    assert claims[f"{where}, final weights: tanh_mse beats sigmoid_bce"].status == "supported"
    moved_claim = [c for k, c in claims.items() if k.startswith(f"{where}: tanh_mse loses less")]
    assert [c.status for c in moved_claim] == ["supported"]
    ece = claims[f"{where}, final weights: tanh_mse is better calibrated (ECE lower)"]
    assert ece.status == "supported" and "Δ -0.0325" in ece.numbers and "TOST n/a" in ece.numbers
    fit = [c for k, c in claims.items() if k.startswith(f"{where}, last epoch: tanh_mse fits its training labels less")]
    assert [c.status for c in fit] == ["supported"] and "Δ -0.0150" in fit[0].numbers  # -(0.01 + 0.002 · 2.5)
    fewer = [c for k, c in claims.items() if k.startswith(f"{where}, final weights: tanh_mse memorises fewer")]
    assert [c.status for c in fewer] == ["supported"] and "Δ -0.1250" in fewer[0].numbers  # -(0.10 + 0.01 · 2.5)
    assert cell.metrics["last/train/kept_right"]["mean_diff"] == pytest.approx(0.0)


def test_heads_tuned_to_one_scale_other_than_the_shared_one_form_the_primary_matched_cell(tmp_path):
    """Every head peaking at the grid's same lr_scale (2 here, not the shared 1) still gives a matched-lr cell, and
    it is the primary one: the runs at that scale are not read as another "shared lr"."""
    selection = Sweep(tmp_path / "atlas_mechanism", "atlas_mechanism")
    for seed in (0, 1):
        for head in ("sigmoid_bce", "tanh_mse", "sigmoid_mse"):
            selection.job(head, seed, scale=1.0, val=0.70)
            selection.job(head, seed, scale=2.0, val=0.75)
            selection.job(head, seed, scale=4.0, val=0.60)  # a grid-only rate: no cell of its own
    confirm = Sweep(tmp_path / "atlas_confirm", "atlas_confirm")
    for i, seed in enumerate(SEEDS):
        for head, values in (("sigmoid_bce", BCE), ("tanh_mse", TANH)):
            confirm.job(head, seed, scale=2.0, test=values[i])
            confirm.job(head, seed, scale=1.0, test=values[i] - 0.01)
            confirm.job(head, seed, scale=0.5, test=values[i] - 0.02)  # measured off the grid's pick: secondary
    cells = atlas_cells(load_runs([selection.root, confirm.root]))
    by_name = cells_by_name(cells)
    matched = by_name[("plain · adamw · matched lr", "tanh_mse − sigmoid_bce")]
    assert matched.primary and matched.scales == (2.0, 2.0) and matched.stats["n"] == 6
    assert matched.stats["mean_diff"] == pytest.approx(0.0105)
    assert not by_name[("plain · adamw · shared lr", "tanh_mse − sigmoid_bce")].primary
    assert [c.context for c in cells if c.primary] == ["plain · adamw · matched lr"]
    assert {c.scales for c in cells if c.comparison == "tanh_mse − sigmoid_bce"} == {(0.5, 0.5), (1.0, 1.0), (2.0, 2.0)}


def test_a_seed_run_twice_counts_once_per_cell_and_the_replication_is_reported(tmp_path):
    """The controls' sweep reruns the plain heads on the same seeds: a plain cell reads atlas_confirm's runs, a
    control cell its own sweep's, and the report gives the same-seed differences apart."""
    confirm = Sweep(tmp_path / "atlas_confirm", "atlas_confirm")
    controls = Sweep(tmp_path / "atlas_controls", "atlas_controls")
    for i, seed in enumerate(SEEDS):
        for head, values in (("sigmoid_bce", BCE), ("tanh_mse", TANH), ("sigmoid_mse", SMSE)):
            confirm.job(head, seed, test=values[i])
            controls.job(head, seed, test=values[i] + (0.004 if head == "sigmoid_mse" else 0.0))
        controls.job("control/tanh_half", seed, test=SMSE[i] + 0.004)
    for order in ([controls.root, confirm.root], [confirm.root, controls.root]):  # whatever order they are given in
        cells = cells_by_name(atlas_cells(load_runs(order)))
        plain = cells[("plain · adamw · shared lr", "sigmoid_mse − sigmoid_bce")]
        assert plain.stats["mean_diff"] == pytest.approx(np.mean(SMSE - BCE))  # atlas_confirm's sigmoid_mse
        control = cells[("plain · adamw · control", "tanh_half − sigmoid_mse")]
        assert control.stats["mean_diff"] == pytest.approx(0.0)  # paired with its own sweep's sigmoid_mse
    from scripts.atlas import main

    report = main([str(confirm.root), str(controls.root), "--out", str(tmp_path / "out")]).read_text()
    assert (
        "| sigmoid_mse | plain · adamw · 1 | atlas_confirm → atlas_controls | 6 | +0.0040 | 0.0000 | 0.0040 |" in report
    )


def test_a_claim_that_changes_on_the_earlier_replication_says_so(tmp_path):
    """The same seeds run twice (run.json's start orders them): the claim is decided on the latest runs and the
    earlier runs' numbers and status are shown beside it."""
    import json as json_

    first = Sweep(tmp_path / "first", "atlas_confirm")
    second = Sweep(tmp_path / "second", "atlas_confirm")
    for i, seed in enumerate(SEEDS):
        first.job("sigmoid_bce", seed, test=BCE[i])
        first.job("tanh_mse", seed, test=2 * BCE[i] - TANH[i])  # -0.0105: tanh_mse worse, resolved
        second.job("tanh_mse", seed, test=BCE[i] + 0.0004 * (-1) ** i)  # the rerun: no difference
    for sweep, when in ((first, "2026-12-01 10:00:00"), (second, "2026-12-02 10:00:00")):
        for job in sweep.root.iterdir():
            if job.is_dir():
                (job / "run.json").write_text(json_.dumps({"started": when}))
    from scripts.atlas import main

    report = main([str(second.root), str(first.root), "--out", str(tmp_path / "out")]).read_text()
    row = next(line for line in report.splitlines() if line.startswith("| adamw, shared lr: tanh_mse is worse"))
    assert "Δ +0.0000" in row and "on the earlier replication: Δ -0.0105" in row
    assert row.endswith("| **refuted**; on the earlier replication: **supported** |")  # equivalent now
    assert "| tanh_mse | plain · adamw · 1 | atlas_confirm → atlas_confirm | 6 |" in report
