"""Shared test helpers: config composition and running the entry points, in this process (``call``,
``run_in_process``) or in a subprocess (``run_entry``)."""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import os
import subprocess
from contextlib import contextmanager
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = str(ROOT / "configs")

if os.environ.get("PYTEST_XDIST_WORKER"):  # two workers on two cores: one thread each, here and in subprocesses
    import torch

    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

# Tiny synthetic data + no W&B: what every end-to-end test uses.
TINY = ["logger=none", "dataset.synthetic.num_train=64", "dataset.synthetic.num_val=16"]


@functools.lru_cache(maxsize=None)
def script(name: str):
    """``scripts/<name>.py`` as a module (the scripts are not a package), loaded once per process."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compose_config(name: str, overrides: list[str] | None = None):
    from robust_seg.evaluation.config import EvaluateConfig
    from robust_seg.run.config import register_configs
    from robust_seg.training.config import PretrainConfig, TrainConfig

    register_configs(evaluate=EvaluateConfig, train=TrainConfig, pretrain=PretrainConfig)
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return compose(config_name=name, overrides=overrides or [], return_hydra_config=False)


def run_entry(module: str, *overrides: str, cwd: Path, timeout: float = 600, check: bool = False):
    """Run ``python -m robust_seg.<module> overrides`` with ``cwd`` as working directory (outputs/ lands there)."""
    env = dict(os.environ, WANDB_MODE="disabled", PYTHONPATH=str(ROOT), HYDRA_FULL_ERROR="0")
    completed = subprocess.run([sys.executable, "-m", f"robust_seg.{module}", *overrides], cwd=cwd, env=env,
                               capture_output=True, text=True, timeout=timeout)
    if check and completed.returncode != 0:
        raise AssertionError(f"{module} failed ({completed.returncode}):\n{completed.stdout[-3000:]}\n"
                             f"{completed.stderr[-3000:]}")
    return completed


def call(module: str, *args: str) -> tuple[int, str, str]:
    """Run ``python -m robust_seg.<module> args`` in this process: (exit code, stdout, stderr). The same code path as
    the console scripts without the interpreter's start (several seconds, mostly torch and MMSeg imports); a test that
    needs a real process (a kill, the interpreter's exit, torchrun) uses :func:`run_entry`."""
    import importlib

    import torch

    entry = importlib.import_module(f"robust_seg.{module}")
    out, err = io.StringIO(), io.StringIO()
    argv, threads = sys.argv, torch.get_num_threads()
    sys.argv = [f"robust_seg.{module}", *args]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                entry.main()
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        sys.argv = argv
        torch.set_num_threads(threads)
    return code, out.getvalue(), err.getvalue()


def run_in_process(module: str, *overrides: str, cwd: Path, check: bool = False) -> subprocess.CompletedProcess:
    """:func:`call` in ``cwd``, answered as :func:`run_entry` answers (``returncode``, ``stdout``, ``stderr``)."""
    with contextlib.chdir(cwd):
        code, out, err = call(module, *overrides)
    if check and code != 0:
        raise AssertionError(f"{module} failed ({code}):\n{out[-3000:]}\n{err[-3000:]}")
    return subprocess.CompletedProcess([module, *overrides], code, out, err)


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """A test that sets torch's thread count leaves it as it found it: the runs of later tests in this process (and
    their numbers, compared with those of a subprocess) do not depend on which tests ran before."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def workdir(tmp_path):
    return tmp_path


@contextmanager
def killed_at_batch(monkeypatch, batch: int = 2):
    """The evaluation run inside the block is killed (KeyboardInterrupt, expected) when it reaches its ``batch``-th
    batch (1-based), before attacking it; the driver is restored afterwards."""
    from robust_seg.evaluation import driver

    original, calls = driver.check_finite_logits, {"n": 0}

    def killing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == batch:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(driver, "check_finite_logits", killing)
    try:
        with pytest.raises(KeyboardInterrupt):
            yield
    finally:
        monkeypatch.setattr(driver, "check_finite_logits", original)


def calibration_metrics(logits, labels, num_bins: int = 15, temperature: float = 1.0) -> dict[str, float]:
    """All metrics of ``CalibrationAccumulator`` for one batch of logits."""
    from robust_seg.metrics.calibration import CalibrationAccumulator

    accumulator = CalibrationAccumulator(logits.shape[1], num_bins, temperature)
    accumulator.update(logits, labels)
    return accumulator.compute()


def assert_markdown_tables(text: str) -> int:
    """Every Markdown table in ``text`` has as many cells in each row as in its header (a stray ``|`` in a cell, e.g.
    ``||x||``, would add a column); returns the number of tables."""
    tables, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    for table in tables:
        widths = [len(row.strip().strip("|").replace("\\|", "").split("|")) for row in table]
        assert len(set(widths)) == 1, f"a Markdown table with rows of {widths} cells:\n" + "\n".join(table)
    return len(tables)
