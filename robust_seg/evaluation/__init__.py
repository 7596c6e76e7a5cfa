"""Robustness evaluation: attack a model over a list of radii and report ACC / mIoU (SEA paper Sec. 2.1)."""


def evaluate(cfg, run_dir, model=None, data=None) -> dict:
    """See :func:`robust_seg.evaluation.driver.evaluate` (imported lazily: the entry point registers this package's
    schema, ``evaluation/config.py``, before any model, data or plotting module is needed)."""
    from robust_seg.evaluation.driver import evaluate as _evaluate

    return _evaluate(cfg, run_dir, model=model, data=data)


__all__ = ["evaluate"]
