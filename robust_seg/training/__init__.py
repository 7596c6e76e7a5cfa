"""Training: clean, PGD adversarial (AT / PIR-AT) and calibration (CALS and baselines) in one loop."""


def train(cfg, run_dir):
    """See :func:`robust_seg.training.loop.train` (imported lazily: it pulls in mmseg)."""
    from robust_seg.training.loop import train as _train

    return _train(cfg, run_dir)


__all__ = ["train"]
