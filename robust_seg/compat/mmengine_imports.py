"""Import MMSeg's models without torch's FSDP and ZeRO modules, which MMEngine imports for wrappers never used here.

``import mmseg.models`` imports MMEngine's runner and model wrappers. Those import ``torch.distributed.fsdp`` (for
``MMFullyShardedDataParallel``) and ``torch.distributed.optim`` (for its ``ZeroRedundancyOptimizer`` wrapper), and
through them DTensor and sympy. That costs about 1.4 s of every command's start-up on the project's 2-core machine
(``python -X importtime``), in every process of a torchrun job.

The project builds only models through MMSeg's registry. It trains with torch's own optimizers and
DistributedDataParallel. So during that one import, :func:`mmseg_without_fsdp` does two things:

- It stands placeholders in for the FSDP modules. Every name imported from them is an empty class, so MMEngine's
  FSDP wrapper is defined but unusable.
- It hides ``torch.distributed.optim``. MMEngine guards that import, and its ZeRO wrapper falls back to a plain
  class.

Afterwards the placeholders are removed, so a later ``import torch.distributed.fsdp`` (or ``.optim``) gets torch's
real module. If either module is already imported, or MMSeg's models are, the import runs unchanged.
"""
from __future__ import annotations

import contextlib
import sys
import types
from typing import Iterator

PLACEHOLDERS = ("torch.distributed.fsdp", "torch.distributed.fsdp.api",
                "torch.distributed.fsdp.fully_sharded_data_parallel")
HIDDEN = ("torch.distributed.optim",)


class _Placeholder(types.ModuleType):
    """A module whose every public name is an empty class (what MMEngine subclasses or annotates with)."""

    def __getattr__(self, name: str) -> type:
        if name.startswith("__"):
            raise AttributeError(name)
        value = type(name, (), {"__module__": f"{self.__name__} (placeholder)",
                                "__doc__": "placeholder: torch's FSDP was not imported"})
        setattr(self, name, value)
        return value


@contextlib.contextmanager
def mmseg_without_fsdp() -> Iterator[None]:
    """Within the block, ``torch.distributed.fsdp`` is a placeholder and ``torch.distributed.optim`` cannot be
    imported (module doc); no-op when either is already imported or ``mmseg.models`` is."""
    if "mmseg.models" in sys.modules or any(name in sys.modules for name in PLACEHOLDERS + HIDDEN):
        yield
        return
    for name in PLACEHOLDERS:
        sys.modules[name] = _Placeholder(name)
    for name in HIDDEN:
        sys.modules[name] = None  # "import torch.distributed.optim" raises ImportError
    try:
        yield
    finally:
        for name in PLACEHOLDERS + HIDDEN:
            sys.modules.pop(name, None)
        distributed = sys.modules.get("torch.distributed")
        if isinstance(getattr(distributed, "fsdp", None), _Placeholder):
            delattr(distributed, "fsdp")
