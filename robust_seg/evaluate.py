"""``python -m robust_seg.evaluate``: robustness evaluation (see configs/evaluate.yaml)."""
from __future__ import annotations

if __name__ == "__main__":  # the short help before any heavy import; no cycle collection during the imports
    from robust_seg.run.collector import pause_during_imports
    from robust_seg.run.help import print_help_if_asked

    print_help_if_asked("evaluate")
    pause_during_imports()

import sys  # noqa: E402
import types  # noqa: E402

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from robust_seg.evaluation.config import EvaluateConfig  # noqa: E402
from robust_seg.names import WORST  # noqa: E402
from robust_seg.names import CONFIGS  # noqa: E402
from robust_seg.run.cli import run_job, run_main  # noqa: E402
from robust_seg.run.config import register_configs  # noqa: E402

register_configs(evaluate=EvaluateConfig)


@hydra.main(config_path=str(CONFIGS), config_name="evaluate", version_base="1.3")
def hydra_main(cfg: DictConfig) -> float:
    """Thin Hydra wrapper around :func:`robust_seg.evaluation.evaluate`.

    Returns the worst-case ACC at the largest radius (the median norm x 255 for minimal-norm attacks),
    the value a Hydra sweeper would optimise.
    """
    from robust_seg.evaluation import evaluate

    results = run_job(cfg, lambda run: evaluate(cfg, run), job_name="evaluate")
    if "report" not in results:  # a torchrun rank other than 0: rank 0 reports
        return float("nan")
    print(results["report"])
    print(f"run directory: {results['run_directory']}")
    if "minimal_norm" in results:
        return results["minimal_norm"]["median_x255"]
    if not results.get("radii"):  # a shard without images
        return float("nan")
    last = list(results["radii"])[-1]
    return results["radii"][last][WORST]["acc"]


def main() -> None:
    from robust_seg.run.help import print_help_if_asked

    print_help_if_asked("evaluate")
    run_main(hydra_main, launches_processes=True)


if __name__ == "__main__":
    main()


class _EntryPointModule(types.ModuleType):
    """``robust_seg.evaluate`` is both this entry point's module and the Python API's ``rs.evaluate`` function: once
    the module is imported it shadows the package attribute, so calling the module calls the API function."""

    def __call__(self, *args, **kwargs):
        from robust_seg.api import evaluate

        return evaluate(*args, **kwargs)


sys.modules[__name__].__class__ = _EntryPointModule
