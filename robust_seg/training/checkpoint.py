"""Training checkpoints: everything needed to continue bit-for-bit, as plain tensors and Python values."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from robust_seg.reporting.files import atomic_torch_save, load_state


def rng_state() -> dict:
    numpy_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(numpy_state[1].astype(np.int64)), "pos": int(numpy_state[2]),
                  "has_gauss": int(numpy_state[3]), "cached_gaussian": float(numpy_state[4])},
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    numpy_state = state["numpy"]
    np.random.set_state(("MT19937", numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
                         numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def save_checkpoint(path: Path, **parts) -> None:
    """Atomically write ``parts`` (state dicts, epoch, history) plus the RNG states."""
    atomic_torch_save(path, {**parts, "rng": rng_state()})


def load_checkpoint(path: Path) -> dict:
    """A checkpoint written by :func:`save_checkpoint`; a damaged one is a one-line ``StateFileError``."""
    return load_state(path, "the training checkpoint", "delete it to train this run from the start (or from an older "
                      "copy); the run's logs are unchanged", map_location="cpu")
