"""The numbers of a fixed set of tiny runs (every attack kind, the main job, a calibration evaluation, one epoch of
AT, CALS-ALM and PIR-AT) are those recorded in tests/regression/expected.json (scripts/regression_runs.py): a
change of the code's shape must not change a single result. Re-record only for an intended change of results."""
from __future__ import annotations

import json

import pytest

from tests.conftest import script


def _script():
    return script("regression_runs")


def test_tiny_runs_give_the_recorded_numbers(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    script = _script()
    if not script.EXPECTED.exists():
        pytest.skip(f"no numbers recorded for this machine's CPU kernels ({script.EXPECTED.name}): record them with "
                    "python scripts/regression_runs.py --record on a trusted commit")
    expected = json.loads(script.EXPECTED.read_text())
    assert sorted(expected) == sorted(script.RUNS)
    actual = script.run_all(list(script.RUNS))
    assert script.differences(expected, actual) == []


def test_the_comparison_sees_a_changed_number():
    script = _script()
    expected = {"run": {"radii.8/255.worst_case.acc": 71.25, "images": 2}}
    assert script.differences(expected, {"run": {"radii.8/255.worst_case.acc": 71.25, "images": 2}}) == []
    changed = script.differences(expected, {"run": {"radii.8/255.worst_case.acc": 71.250001, "images": 2}})
    assert len(changed) == 1 and "71.25 -> 71.250001" in changed[0]
    assert "missing images" in script.differences(expected, {"run": {"radii.8/255.worst_case.acc": 71.25}})[0]
