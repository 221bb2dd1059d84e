"""The OmegaConf resolvers the configs use; registered once, before Hydra or `build` resolves a config.

- `seg.run_dir`, `seg.hydra_subdir`: run directories (seg/run/rundir.py, `hydra.run.dir` in conf/train.yaml);
- `seg.times`: a product, so an optimizer's learning rate is its own default times the top-level `lr_scale`
  (conf/optimizer/*.yaml). One `lr_scale` sweep then spans every optimizer's grid around its own default,
  e.g. AdamW's 6e-3 and SGD's 0.1 (the head atlas, conf/experiment/atlas_lr.yaml).
"""

from __future__ import annotations

from omegaconf import OmegaConf

from seg.run.rundir import hydra_subdir, run_dir


def times(a: float, b: float) -> float:
    return float(a) * float(b)


def register_resolvers() -> None:
    for name, function in (("seg.run_dir", run_dir), ("seg.hydra_subdir", hydra_subdir), ("seg.times", times)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, function)
