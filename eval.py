"""Evaluate a checkpoint on a split: `python eval.py ckpt=<run>/checkpoints/best.ckpt [split=val] [data.root=...]`."""

import hydra
from omegaconf import DictConfig
from rich.console import Console

from seg.inference.evaluate import evaluate
from seg.run.cli import quiet_library_noise, report_config_errors, report_user_errors
from seg.run.config_check import check_value_ranges


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    quiet_library_noise()
    with report_user_errors():
        check_value_ranges(cfg)  # batch_size=0: one line, before the checkpoint is read
        report = evaluate(cfg)
        spread, split = report["per_image_iou"], report["split"]
        Console().print(
            f"{split}: IoU {report[split + '/iou']:.4f}  Dice {report[split + '/dice']:.4f}"
            f" at threshold {report['threshold']:g} ({report['threshold_source']})  AP {report[split + '/ap']:.4f}"
            f"  per image: mean {spread['mean']:.4f}, median {spread['median']:.4f}, worst {spread['min']:.4f}"
            f"  ({report['images']} images, {report['seconds']:.1f} s) -> {report['output']}",
            soft_wrap=True,
        )


if __name__ == "__main__":
    with report_config_errors():  # an unknown option or key on the command line: one line
        main()
