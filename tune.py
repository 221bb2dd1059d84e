"""Optuna over train.py runs: `python tune.py hparams_search=optuna head=tanh_mse` (docs/sweeps.md).

Start it on as many machines as you like with one `tune.storage` database URL: they share one study.
"""

import hydra
from omegaconf import DictConfig

from seg.run.cli import quiet_library_noise, report_config_errors, report_user_errors
from seg.run.resolvers import register_resolvers
from seg.run.tune import tune

register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> None:
    quiet_library_noise()
    with report_user_errors():
        tune(cfg)


if __name__ == "__main__":
    with report_config_errors():
        main()
