"""``python -m robust_seg.train``: training (see configs/train.yaml); also under torchrun."""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

from robust_seg.cli import report_user_errors
from robust_seg.config import register_configs

register_configs()


@hydra.main(config_path="../configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float:
    """Thin Hydra wrapper around :func:`robust_seg.training.train`; returns the final validation mIoU."""
    from robust_seg.runtime import hydra_run_dir
    from robust_seg.training import train

    results = report_user_errors(lambda: train(cfg, hydra_run_dir()))
    final = results["final"]
    print(f"final: {final}")
    return final.get("val_miou", float("nan"))


if __name__ == "__main__":
    main()
