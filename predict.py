"""Masks for images with a trained checkpoint: `python predict.py ckpt=<run>/checkpoints/best.ckpt input=photos/ output=masks/`."""

import hydra
from omegaconf import DictConfig

from seg.inference.predict import predict
from seg.run.cli import quiet_library_noise, report_config_errors, report_user_errors
from seg.run.config_check import check_value_ranges


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    quiet_library_noise()
    with report_user_errors():
        check_value_ranges(cfg)  # batch_size=0: one line, before the checkpoint is read
        predict(cfg)


if __name__ == "__main__":
    with report_config_errors():  # an unknown option or key on the command line: one line
        main()
