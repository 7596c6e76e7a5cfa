"""The benchmark scripts run end to end and print one ratio per attack / per k (tiny settings)."""
import runpy
import sys
from pathlib import Path

import pytest
import torch

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def run_script(name: str, arguments: list[str], monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", [name, *arguments])
    runpy.run_path(str(SCRIPTS / name), run_name="__main__")


def test_benchmark_attacks_prints_a_ratio_per_attack_and_thread_count(monkeypatch, capsys, restore_threads):
    run_script("benchmark_attacks.py", ["--model", "toy", "--iterations", "2", "--rounds", "1",
                                        "--threads", "1,2"], monkeypatch)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(",")[1].strip() for line in lines if line.startswith("device")] == ["threads 1", "threads 2"]
    for attack in ("pgd", "apgd", "sea", "alma_prox"):
        rows = [line for line in lines if line.split(":")[0].strip() == attack]
        assert len(rows) == 2 and all(" ratio " in row for row in rows)


@pytest.mark.parametrize("value", ["a", "0", "1,,2"])
def test_benchmark_attacks_rejects_a_malformed_thread_count(value, monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_script("benchmark_attacks.py", ["--threads", value], monkeypatch)
    assert exit_info.value.code == 2 and "--threads" in capsys.readouterr().err


def test_benchmark_training_prints_a_ratio_per_k(monkeypatch, capsys, restore_threads):
    run_script("benchmark_training.py", ["--batch", "2", "--steps", "1", "2", "--repeats", "1"], monkeypatch)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("k=")]
    assert [line.split(":")[0] for line in lines] == ["k=1", "k=2"]
    assert all("AT / ((k+1) x clean) = " in line for line in lines)
