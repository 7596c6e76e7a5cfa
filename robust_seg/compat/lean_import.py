"""Import MMSeg's models without the modules MMSeg and MMEngine import for features this project never uses.

``from mmseg.utils import register_all_modules`` and the registration import all of MMSeg: its datasets,
transforms, losses, assigners, text encoders and every backbone. On the project's 2-core machine
(``python -X importtime``) this costs about 2.4 s of every command's start-up, in every process of a torchrun job,
mostly for modules no model here calls:

- ``torch.distributed.fsdp`` (for MMEngine's ``MMFullyShardedDataParallel``) and ``torch.distributed.optim`` (for
  its ``ZeroRedundancyOptimizer`` wrapper), and through them DTensor and sympy: about 1.4 s. The project trains
  with torch's own optimizers and DistributedDataParallel.
- SciPy's ``optimize`` (the Hungarian assigner of Mask2Former-style heads), ``ndimage`` (biomedical transforms,
  the Hausdorff loss) and ``interpolate`` (BEiT's position-embedding resize): about 0.6 s.
- ``mmseg.utils.tokenizer``, CLIP's tokenizer for the SAN and CAT-Seg text encoders, which reads its BPE
  vocabulary at import: about 0.35 s.

So during that one import, :func:`lean_mmseg_import` stands in for them:

- The FSDP modules become placeholders: every name imported from them is an empty class, so MMEngine's FSDP
  wrapper is defined but unusable. ``torch.distributed.optim`` is hidden: MMEngine guards that import, and its
  ZeRO wrapper falls back to a plain class.
- The SciPy modules and the tokenizer are *deferred*: a function imported from one during the block calls the real
  module's function when it is first called, and a module object kept from the block (``from scipy import
  interpolate``) reads the real module's attributes once the block is over. Whatever MMSeg would compute with them
  is therefore unchanged, only imported later (tested).

Afterwards every stand-in is removed from ``sys.modules`` (and from its parent package), so a later import gets the
real module. A module already imported before the block is used as it is; if MMSeg's models are already imported
the block does nothing.
"""
from __future__ import annotations

import contextlib
import importlib
import sys
import types
from typing import Any, Callable, Iterator

PLACEHOLDERS = ("torch.distributed.fsdp", "torch.distributed.fsdp.api",
                "torch.distributed.fsdp.fully_sharded_data_parallel")
HIDDEN = ("torch.distributed.optim",)
DEFERRED = ("scipy.optimize", "scipy.ndimage", "scipy.interpolate", "mmseg.utils.tokenizer")


class _Placeholder(types.ModuleType):
    """A module whose every public name is an empty class (what MMEngine subclasses or annotates with)."""

    def __getattr__(self, name: str) -> type:
        if name.startswith("__"):
            raise AttributeError(name)
        value = type(name, (), {"__module__": f"{self.__name__} (placeholder)",
                                "__doc__": "placeholder: torch's FSDP was not imported"})
        setattr(self, name, value)
        return value


class _Deferred(types.ModuleType):
    """Stands in for a module during the import block: a name read inside the block (``from m import f``) is a
    function that calls the real ``m.f``; a name read after the block is the real module's attribute."""

    def __init__(self, name: str) -> None:
        super().__init__(name, f"deferred import of {name}: imported when first used")
        self._within_block = True

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if not self._within_block:
            return getattr(importlib.import_module(self.__name__), name)
        return _forwarding(self.__name__, name)  # not kept: after the block the real attribute is read


def _forwarding(module: str, name: str) -> Callable:
    def forward(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    forward.__name__ = forward.__qualname__ = name
    forward.__doc__ = f"{module}.{name}, imported when first called"
    return forward


@contextlib.contextmanager
def lean_mmseg_import() -> Iterator[None]:
    """Within the block, FSDP is a placeholder, ``torch.distributed.optim`` cannot be imported and SciPy's
    ``optimize``/``ndimage``/``interpolate`` and MMSeg's tokenizer are deferred (module doc); no-op when MMSeg's
    models are already imported. Modules already imported are left as they are."""
    if "mmseg.models" in sys.modules:
        yield
        return
    stand_ins: dict[str, Any] = {}
    if not any(name in sys.modules for name in PLACEHOLDERS + HIDDEN):  # a real FSDP import is kept whole
        stand_ins.update({name: _Placeholder(name) for name in PLACEHOLDERS})
        stand_ins.update({name: None for name in HIDDEN})  # "import torch.distributed.optim" raises ImportError
    stand_ins.update({name: _Deferred(name) for name in DEFERRED if name not in sys.modules})
    sys.modules.update(stand_ins)
    try:
        yield
    finally:
        for name, stand_in in stand_ins.items():
            if name in sys.modules and sys.modules[name] is stand_in:
                del sys.modules[name]
            parent_name, _, child = name.rpartition(".")
            parent = sys.modules.get(parent_name)  # read through vars(): its __getattr__ may import the real one
            if stand_in is not None and parent is not None and vars(parent).get(child) is stand_in:
                delattr(parent, child)
            if isinstance(stand_in, _Deferred):
                stand_in._within_block = False
