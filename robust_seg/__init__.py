"""robust_seg: adversarial robustness of semantic segmentation models.

Implements SEA and PIR-AT (Croce et al., "Towards reliable evaluation and fast
training of robust semantic segmentation models") and ALMA prox / CALS (Rony,
thesis chapters 5 and 6) on top of MMSegmentation models.
"""

IGNORE_INDEX = 255
"""Label of unlabelled pixels: never counted in any loss or metric."""

__version__ = "0.1.0"

__all__ = ["IGNORE_INDEX", "attacks", "evaluate", "load_data", "load_model", "__version__"]


def __getattr__(name: str):
    """``rs.load_model``, ``rs.load_data``, ``rs.evaluate`` (robust_seg.api) and ``rs.attacks``, imported on first
    use."""
    if name in ("load_model", "load_data", "evaluate", "compose"):
        from robust_seg import api

        return getattr(api, name)
    if name == "attacks":
        import importlib

        return importlib.import_module("robust_seg.attacks")
    raise AttributeError(f"module 'robust_seg' has no attribute {name!r}")
