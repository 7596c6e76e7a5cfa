"""``python -m robust_seg.pretrain``: classifier pre-training of a backbone (see configs/pretrain.yaml)."""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

from robust_seg.cli import report_user_errors
from robust_seg.config import register_configs

register_configs()


@hydra.main(config_path="../configs", config_name="pretrain", version_base="1.3")
def main(cfg: DictConfig) -> float:
    """Thin Hydra wrapper around :func:`robust_seg.training.pretraining.pretrain_backbone`."""
    from robust_seg.runtime import hydra_run_dir
    from robust_seg.training.pretraining import pretrain_backbone

    results = report_user_errors(lambda: pretrain_backbone(cfg, hydra_run_dir()))
    print(f"final: {results['final']}")
    return results["final"].get("val_acc", float("nan"))


if __name__ == "__main__":
    main()
