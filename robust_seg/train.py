"""``python -m robust_seg.train``: training (see configs/train.yaml); also under torchrun."""
from __future__ import annotations

if __name__ == "__main__":  # the short help before any heavy import
    from robust_seg.run.help import print_help_if_asked

    print_help_if_asked("train")

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from robust_seg.paths import CONFIGS  # noqa: E402
from robust_seg.run.cli import run_job, run_main  # noqa: E402
from robust_seg.run.config import register_configs  # noqa: E402
from robust_seg.training.config import TrainConfig  # noqa: E402

register_configs(train=TrainConfig)


@hydra.main(config_path=str(CONFIGS), config_name="train", version_base="1.3")
def hydra_main(cfg: DictConfig) -> float:
    """Thin Hydra wrapper around :func:`robust_seg.training.train`; returns the final validation mIoU."""
    from robust_seg.training import train

    results = run_job(cfg, lambda run: train(cfg, run), job_name="train")
    final = results["final"]
    print(f"final: {final}")
    return final.get("val_miou", float("nan"))


def main() -> None:
    from robust_seg.run.help import print_help_if_asked

    print_help_if_asked("train")
    run_main(hydra_main)


if __name__ == "__main__":
    main()
