"""``python -m robust_seg.pretrain``: classifier pre-training of a backbone (see configs/pretrain.yaml)."""
from __future__ import annotations

if __name__ == "__main__":  # no cycle collection during the imports (robust_seg.run.collector)
    from robust_seg.run.collector import pause_during_imports

    pause_during_imports()

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from robust_seg.names import CONFIGS  # noqa: E402
from robust_seg.run.cli import run_job, run_main  # noqa: E402
from robust_seg.run.config import register_configs  # noqa: E402
from robust_seg.training.config import PretrainConfig  # noqa: E402

register_configs(pretrain=PretrainConfig)


@hydra.main(config_path=str(CONFIGS), config_name="pretrain", version_base="1.3")
def hydra_main(cfg: DictConfig) -> float:
    """Thin Hydra wrapper around :func:`robust_seg.training.pretraining.pretrain_backbone`."""
    from robust_seg.training.pretraining import pretrain_backbone

    def job(run):
        run.accept(cfg)
        return pretrain_backbone(cfg, run.path)

    results = run_job(cfg, job, job_name="pretrain")
    print(f"final: {results['final']}")
    return results["final"].get("val_acc", float("nan"))


def main() -> None:
    run_main(hydra_main)


if __name__ == "__main__":
    main()
