"""Export a checkpoint to ONNX (or TorchScript): `python scripts/export.py ckpt=<run>/checkpoints/best.ckpt`."""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

# scripts/ is not the project folder: import this checkout's seg/, not another one installed in the venv
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from seg.inference.export import export  # noqa: E402
from seg.run.cli import quiet_library_noise, report_user_errors  # noqa: E402
from seg.run.config_check import check_value_ranges  # noqa: E402


@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
def main(cfg: DictConfig) -> None:
    quiet_library_noise()
    with report_user_errors():
        check_value_ranges(cfg)  # batch_size=0: one line, before the checkpoint is read
        result = export(cfg)
        diffs = ", ".join(f"{shape}: {diff:.1e}" for shape, diff in result["max_abs_diff"].items())
        print(
            f"wrote {result['output']} ({result['format']}, {result['head']} probability);"
            f" max abs diff to PyTorch (batch x channels x height x width): {diffs}"
        )


if __name__ == "__main__":
    main()
