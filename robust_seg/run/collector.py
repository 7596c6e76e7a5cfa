"""Python's cycle collector in a command's start-up and exit: neither should cost more than the run's own garbage.

Start-up. Importing torch, MMSeg and matplotlib creates some 270,000 long-lived objects, and the collector's
generation-2 passes traverse all of them: five full passes and about 0.5 s of every command's start-up on the
project's 2-core machine (measured with ``gc.callbacks``), in every process of a torchrun job. An entry module run
as a command (``python -m robust_seg.evaluate``, torchrun's workers) calls :func:`pause_during_imports` before its
imports; :func:`resume_after_start_up` (from ``run_main``) then moves everything imported so far into the permanent
generation (``gc.freeze``), which collections skip, and switches the collector back on for the run. The price is
the start-up's own cyclic garbage (some 8,000 objects), kept for the life of the process instead of being
collected. A process that merely imports the entry module (the Python API, the tests) is left alone.

Exit. Interpreter finalisation otherwise runs full collections over every object left: about 0.5 s of every
command. :func:`freeze_at_exit` freezes them first. Nothing is leaked or skipped: the objects are still released
as the interpreter tears its modules down.
"""
from __future__ import annotations

import atexit
import gc

_PAUSED = [False]


def pause_during_imports() -> None:
    """Switch the collector off for a command's imports (only in a process started as that command)."""
    if gc.isenabled():
        gc.disable()
        _PAUSED[0] = True


def resume_after_start_up() -> None:
    """After :func:`pause_during_imports`: freeze the objects imported so far and switch the collector back on;
    otherwise nothing."""
    if _PAUSED[0]:
        _PAUSED[0] = False
        gc.freeze()
        gc.enable()


def freeze_at_exit() -> None:
    """Let the process end without the collector's passes over every object left (run at interpreter exit)."""
    atexit.unregister(gc.freeze)  # once, however many entry points ran in this process
    atexit.register(gc.freeze)
