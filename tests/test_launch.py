"""``runtime.processes``: which count a command line asks for, the check that a composed config agrees with the
processes running, and where a worker's one-line error goes (the runs themselves: tests/test_shards.py and
tests/test_ddp.py)."""
import pytest

from robust_seg.errors import ConfigError
from robust_seg.run.launch import ERRORS, check_processes, print_error, requested_processes


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
