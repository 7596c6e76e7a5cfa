"""Errors raised by the data layer."""
from __future__ import annotations

from robust_seg.errors import RobustSegError


class DatasetError(RobustSegError, ValueError):
    """A dataset configuration or a dataset on disk is unusable."""


class DatasetNotFoundError(DatasetError):
    """A dataset root is missing or does not have the expected on-disk layout.

    The message is one line naming the path and the expected layout.
    """


PREPARE_NAMES = {"PASCAL-VOC": "pascal_voc", "ADE20K": "ade20k", "Cityscapes": "cityscapes"}
"""The dataset's name for ``python -m robust_seg.data.prepare`` (its config group option)."""


def check_layout(dataset: str, root: str | None, layout: str, subdirectories: tuple[str, ...]):
    """The root as a Path and a function making the one-line error for it; raises if a directory is missing.

    ``layout`` describes the expected on-disk layout; every error names the path, the layout and the fix.
    """
    from pathlib import Path

    def fail(problem: str) -> DatasetNotFoundError:
        return DatasetNotFoundError(f"{dataset} {problem} at {root}: {layout} (set dataset.root=..., or lay the "
                                    f"archives out with python -m robust_seg.data.prepare {PREPARE_NAMES.get(dataset, dataset)} --archives DIR)")

    if root is None or not Path(root).is_dir():
        raise fail("not found")
    base = Path(root)
    for name in subdirectories:
        if not (base / name).is_dir():
            raise fail(f"malformed (no {name}/)")
    return base, fail
