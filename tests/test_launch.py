"""``runtime.processes``: which count a command line asks for, the check that a composed config agrees with the
processes running, and where a worker's one-line error goes (the runs themselves: tests/test_shards.py and
tests/test_ddp.py)."""
import os
import re
import subprocess
import sys

import pytest

from robust_seg.errors import ConfigError
from robust_seg.run.launch import ERRORS, check_processes, print_error, requested_processes
from tests.conftest import ROOT


def test_the_last_processes_override_counts_and_a_malformed_one_is_refused():
    assert requested_processes([]) == 1
    assert requested_processes(["attack=sea", "runtime.processes=3"]) == 3
    assert requested_processes(["++runtime.processes=2", "runtime.processes=4"]) == 4
    assert requested_processes(["runtime.processes_x=3", "runtime.threads=2"]) == 1
    for bad in ("0", "-1", "two", "2.0", ""):
        with pytest.raises(ConfigError, match=r"runtime\.processes=.*must be an integer >= 1"):
            requested_processes([f"runtime.processes={bad}"])


def test_a_config_must_agree_with_the_processes_running(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    check_processes(1)
    with pytest.raises(ConfigError, match="only when given on the command line"):
        check_processes(2)  # e.g. set in a config file: no process was started for it
    with pytest.raises(ConfigError, match="must be an integer >= 1"):
        check_processes(0)
    monkeypatch.setenv("WORLD_SIZE", "2")
    check_processes(1)  # torchrun --nproc_per_node=2 with the default
    check_processes(2)
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(ConfigError, match="but 3 processes were started"):
        check_processes(2)


def test_a_worker_hands_its_error_to_the_launcher(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv(ERRORS, raising=False)
    print_error("a bad value")
    assert capsys.readouterr().err == "error: a bad value\n"
    monkeypatch.setenv(ERRORS, str(tmp_path))
    monkeypatch.setenv("RANK", "1")
    print_error("a bad value")
    assert capsys.readouterr().err == "" and (tmp_path / "1").read_text() == "a bad value"


LAUNCHES = '''
import os, sys
from robust_seg.run.launch import launch_processes, print_error


def refuses():  # every rank refuses the same input
    print_error("the same bad value")
    sys.exit(2)


def bug_on_rank_1():
    if os.environ["RANK"] == "1":
        raise RuntimeError("a bug on rank 1")


def fine():
    print(f"rank {os.environ['RANK']} of {os.environ['WORLD_SIZE']}", flush=True)


def refuses_on_rank_0_while_rank_1_works():  # the launcher stops rank 1: it unwinds, then ends without a word
    if os.environ["RANK"] == "0":
        refuses()
    import time
    try:
        time.sleep(60)
    finally:
        with open("unwound", "w") as marker:  # as run_job's clean-up of a run directory it created would run
            marker.write(os.environ["RANK"])


for worker in (refuses, bug_on_rank_1, fine, refuses_on_rank_0_while_rank_1_works):
    print(f"{worker.__name__}: status {launch_processes(2, worker)}", flush=True)
'''


def test_launched_workers_end_as_processes_would(tmp_path):
    """A refusal on every rank is one line (printed by the launcher, once) and its status; a bug keeps its
    traceback and fails the command; workers that succeed see their rank; a worker the launcher stops because
    another failed unwinds (its clean-up runs) and ends silently."""
    script = tmp_path / "launches.py"
    script.write_text(LAUNCHES)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    completed = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                               timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    out, err = completed.stdout, completed.stderr
    assert "refuses: status 2" in out and "bug_on_rank_1: status 1" in out and "fine: status 0" in out, out
    assert "refuses_on_rank_0_while_rank_1_works: status 2" in out, out
    assert (tmp_path / "unwound").read_text() == "1"
    assert err.count("error: the same bad value") == 2, err  # once per launch that refused
    assert err.count("Traceback") == 1 and "RuntimeError: a bug on rank 1" in err, err  # the bug's, no other
    assert sorted(re.findall(r"rank (\d) of 2", out)) == ["0", "1"]  # (two processes' lines may interleave)
