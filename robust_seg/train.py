"""``python -m robust_seg.train``: training (see configs/train.yaml); also under torchrun."""
from __future__ import annotations

if __name__ == "__main__":  # the short help before any heavy import; no cycle collection during the imports
    from robust_seg.run.collector import pause_during_imports
    from robust_seg.run.help import print_help_if_asked

    print_help_if_asked("train")
    pause_during_imports()

from pathlib import Path  # noqa: E402

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from robust_seg.names import CONFIGS  # noqa: E402
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
    print(training_summary(results, cfg))
    return final.get("val_miou", float("nan"))


def training_summary(results: dict, cfg) -> str:
    """What a finished training hands over: its final metrics, run directory, weights and the command that
    evaluates them (the same model and dataset choices and dataset overrides as this run)."""
    from hydra.core.hydra_config import HydraConfig

    final = results["final"]
    metrics = ", ".join(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}"
                        for key, value in final.items() if key != "seconds")
    choices, task = {}, []
    if HydraConfig.initialized():
        choices, task = HydraConfig.get().runtime.choices, list(HydraConfig.get().overrides.task)
    data = [f"dataset={choices.get('dataset', cfg.dataset.name)}",
            *(o for o in task if o.lstrip("+").startswith("dataset."))]
    command = " ".join(["python -m robust_seg.evaluate", f"model={choices.get('model', cfg.model.name)}", *data,
                        f"model.checkpoint={results['weights']}", "attack=sea"])
    return "\n".join([f"final: {metrics}", f"run directory: {Path(results['weights']).parent}",
                      f"weights: {results['weights']}", f"evaluate them: {command}"])


def main() -> None:
    from robust_seg.run.help import print_help_if_asked

    print_help_if_asked("train")
    run_main(hydra_main, launches_processes=True)


if __name__ == "__main__":
    main()
