"""Bad input: one clear line on stderr naming the problem and the fix, non-zero exit.

The first test runs the command as a real process (what the shell sees: the exit status and stderr of the
interpreter); the others run it in this process (``call``: the same code path, without the interpreter's start).
"""

import pytest

from tests.conftest import TINY, run_entry, run_in_process


def _last_line(completed) -> str:
    lines = [line for line in completed.stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def test_a_real_process_prints_one_line_and_exits_with_status_2(tmp_path):
    completed = run_entry("evaluate", *TINY, "attack=sea", "attack.eps=abc", cwd=tmp_path)
    assert completed.returncode == 2 and "Traceback" not in completed.stderr
    assert completed.stderr.strip().splitlines() == [
        "error: attack.eps: cannot read 'abc' as a radius (write e.g. 8/255 or 0.0314)"]


@pytest.mark.parametrize("overrides, expected", [
    (["attack=sea", "attack.eps=abc"], "error: attack.eps: cannot read 'abc' as a radius (write e.g. 8/255 or 0.0314)"),
    (["dataset=pascal_voc", "dataset.root=/nonexistent/VOC2012"], "/nonexistent/VOC2012"),
    (["model.checkpoint=/nonexistent/model.pt"], "error: checkpoint not found: /nonexistent/model.pt"),
    (["attack=sea", "+attack.options.iters=3"], "error: attack.options.iters: not an option of sea"),
])
def test_evaluate_input_errors(tmp_path, overrides, expected):
    base = ["logger=none"] if "dataset=pascal_voc" in overrides else TINY
    completed = run_in_process("evaluate", *base, *overrides, cwd=tmp_path)
    assert completed.returncode != 0
    assert expected in _last_line(completed)
    assert "Traceback" not in completed.stderr


def test_unknown_model_names_the_choices(tmp_path):
    completed = run_in_process("evaluate", *TINY, "model=unet_resnet999", cwd=tmp_path)
    assert completed.returncode != 0
    assert "Could not find 'model/unet_resnet999'" in completed.stderr
    assert "small_upernet_convnext" in completed.stderr  # the available options are listed
    assert "Traceback" not in completed.stderr


def test_wrong_type_is_rejected_by_the_schema(tmp_path):
    completed = run_in_process("train", *TINY, "batch_size=many", cwd=tmp_path)
    assert completed.returncode != 0
    assert "batch_size" in completed.stderr and "Traceback" not in completed.stderr


def test_checkpoint_of_another_model_lists_the_keys(tmp_path):
    import torch

    torch.save({"segmentor.backbone.weight": torch.zeros(1)}, tmp_path / "other.pt")
    completed = run_in_process("evaluate", *TINY, f"model.checkpoint={tmp_path / 'other.pt'}", cwd=tmp_path)
    assert completed.returncode != 0
    line = _last_line(completed)
    assert line.startswith("error: checkpoint") and "missing keys:" in line and "unexpected keys:" in line


