"""Train a U-Net with one head: `python train.py head=tanh_mse`, `python train.py -m head=sigmoid_bce,tanh_mse seed=0,1`."""

import logging

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from seg.run.cli import quiet_library_noise, report_config_errors, report_user_errors
from seg.run.resolvers import register_resolvers
from seg.run.train import optimized_value, train

register_resolvers()  # hydra.run.dir uses them (conf/train.yaml)
log = logging.getLogger("train")


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    quiet_library_noise()
    with report_user_errors():
        try:
            summary = train(cfg)
        except Exception:
            # A multirun keeps a failed job's exception and raises it only after its last job, hours later:
            # write it now, to the console and this job's train.log, while the sweep goes on.
            if HydraConfig.get().mode == RunMode.MULTIRUN:
                log.exception("this job failed; the sweep goes on and reports it again at its end")
            raise
        return optimized_value(summary, cfg.get("optimized_metric"))  # what an Optuna sweep maximizes


if __name__ == "__main__":
    with report_config_errors():  # an unknown option or key on the command line: one line
        main()
