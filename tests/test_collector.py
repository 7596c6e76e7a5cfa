"""A command's start-up and exit without the cycle collector's passes over torch's objects (robust_seg/run/collector.py)."""
import gc
import subprocess
import sys
from types import SimpleNamespace

import pytest

from robust_seg.run import collector


def _python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_paused_for_the_imports_then_resumed_with_the_imported_objects_frozen():
    print_state = "print(gc.isenabled(), gc.get_freeze_count() > 0)\n"
    assert _python("import gc\nfrom robust_seg.run.collector import pause_during_imports, resume_after_start_up\n"
                   "pause_during_imports()\n" + print_state + "import json, email.parser\n"
                   "resume_after_start_up()\n" + print_state).split("\n") == ["False False", "True True"]


def test_resuming_without_a_pause_changes_nothing(monkeypatch):
    monkeypatch.setattr(collector, "_PAUSED", [False])
    frozen = gc.get_freeze_count()
    collector.resume_after_start_up()
    assert gc.isenabled() and gc.get_freeze_count() == frozen  # a process that only imports the entry module


def test_an_entry_point_lets_its_process_exit_without_collector_passes_registering_once(monkeypatch):
    """run_main registers gc.freeze at exit (0.5 s less per command): in a real process the objects are frozen by
    the time the exit handlers registered before it run; entry points run again in one process (as the tests run
    them) register it once."""
    assert _python("import atexit, gc\n"
                   "atexit.register(lambda: print('frozen' if gc.get_freeze_count() else 'not frozen'))\n"
                   "from robust_seg.run.collector import freeze_at_exit\n"
                   "freeze_at_exit()\n") == "frozen"
    registered = []
    monkeypatch.setattr(collector, "atexit", SimpleNamespace(
        register=registered.append, unregister=lambda f: registered.remove(f) if f in registered else None))
    collector.freeze_at_exit()
    collector.freeze_at_exit()
    assert registered == [gc.freeze]


@pytest.mark.slow  # a fresh interpreter importing torch (about 3 s)
@pytest.mark.parametrize("entry", ["evaluate", "train", "pretrain"])
def test_a_command_imports_torch_with_the_collector_paused_and_runs_with_it_on(entry):
    code = ("import gc, runpy, sys\n"
            "from robust_seg.run import collector, cli\n"
            "resume = collector.resume_after_start_up\n"
            "def observed():\n"
            "    print('torch imported:', 'torch' in sys.modules, 'collector on:', gc.isenabled())\n"
            "    resume()\n"
            "    print('collector on:', gc.isenabled())\n"
            "cli.resume_after_start_up = observed\n"
            f"sys.argv = ['{entry}', '--cfg', 'job']\n"
            f"runpy.run_module('robust_seg.{entry}', run_name='__main__')\n")
    lines = _python(code).split("\n")
    assert lines[:2] == ["torch imported: True collector on: False", "collector on: True"]
