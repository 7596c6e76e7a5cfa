"""Progress inside an attack: a callback the evaluation driver installs for the duration of one attack run.

Attacks stay pure functions of their inputs; they only call :func:`tick` once per iteration (one model pass of
the batch, or one query), which does nothing unless a caller has installed a hook with :func:`reporting`.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

_HOOK: list[Callable[[int], None] | None] = [None]


def tick(passes: int = 1) -> None:
    """Report ``passes`` model passes (iterations) done."""
    hook = _HOOK[0]
    if hook is not None:
        hook(passes)


@contextmanager
def reporting(hook: Callable[[int], None]) -> Iterator[None]:
    """Send the ticks of the attacks run inside the block to ``hook``."""
    previous, _HOOK[0] = _HOOK[0], hook
    try:
        yield
    finally:
        _HOOK[0] = previous
