"""attack=corruptions through the evaluation driver (robust_seg/attacks/corruptions.py): the per-corruption table,
severity 0 equal to the clean evaluation, the same corruption of an image in any batch (hence in shards and on
resume; the sharded run equal to one process is in tests/test_shards.py), mCE against a reference run equal to
a hand computation, and one-line errors."""
from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import torch

from tests.conftest import assert_markdown_tables, call

BASE = ["logger=none", "dataset.synthetic.num_val=2", "max_images=2", "batch_size=2"]
GRID = ["attack=corruptions", "attack.options.corruptions=[gaussian_noise,fog,contrast]",
        "attack.options.severities=[0,1,4]"]


def _run(tmp_path: Path, *args: str) -> dict:
    with contextlib.chdir(tmp_path):
        code, out, err = call("evaluate", *BASE, *args)
    assert code == 0, err[-3000:]
    run = Path(out.strip().splitlines()[-1].split("run directory: ")[-1])
    return json.loads((run / "results.json").read_text()) | {"dir": run, "report": (run / "results.md").read_text()}


def test_three_corruptions_at_two_severities_and_the_identity(tmp_path):
    results = _run(tmp_path, *GRID, "run_name=robust")
    table = results["corruptions"]["table"]
    assert list(table) == ["gaussian_noise", "fog", "contrast"] and list(table["fog"]) == ["0", "1", "4"]
    assert assert_markdown_tables(results["report"]) == 1 and "| fog |" in results["report"]
    assert (results["dir"] / "corruptions.png").stat().st_size > 0
    clean = _run(tmp_path, "attack=none", "attack.eps=[0]", "run_name=clean")["radii"]["0"]["worst_case"]
    for name in table:  # severity 0: the images themselves, the clean numbers exactly
        assert table[name]["0"] == {"acc": clean["acc"], "miou": clean["miou"]}
        assert results["radii"][f"{name}/0"]["worst_case"]["per_image_acc"] == clean["per_image_acc"]
    assert table["fog"]["4"]["miou"] < table["fog"]["1"]["miou"] < clean["miou"]  # fog hurts, more at 4
    means = results["corruptions"]["mean"]["fog"]
    assert means["acc"] == pytest.approx((table["fog"]["1"]["acc"] + table["fog"]["4"]["acc"]) / 2)
    # mCE of the clean twin against this run, by hand: CE_c = sum_s (100 - m) / sum_s (100 - m_ref)
    other = _run(tmp_path, *GRID, "model=embedded_clean", f"attack.options.reference={results['dir']}",
                 "run_name=twin")
    ours, ref = other["corruptions"]["table"], table
    for metric in ("acc", "miou"):
        ce = {c: 100 * sum(100 - ours[c][s][metric] for s in ("1", "4")) /
              sum(100 - ref[c][s][metric] for s in ("1", "4")) for c in ref}
        assert {c: other["corruptions"]["ce"][c][metric] for c in ref} == pytest.approx(ce)
        assert other["corruptions"]["mce"][metric] == pytest.approx(sum(ce.values()) / 3)
    assert "mCE against" in other["report"]
    from robust_seg.reporting.grid import build_grid  # the table builder's layout: corruption x severity

    grid = build_grid([results["dir"], other["dir"]], metrics=["miou"])
    assert grid.row_axes == ("corruption", "model") and grid.column_axes == ("severity", "metric")
    cells = {row: dict(zip(grid.columns, cells)) for row, cells in zip(grid.rows, grid.cells)}
    assert cells[("fog", "embedded_clean")][("4", "miou")].mean == ours["fog"]["4"]["miou"]


def test_an_image_is_corrupted_the_same_in_any_batch():
    from omegaconf import OmegaConf

    from robust_seg.attacks.registry import resolve_attack

    attack = resolve_attack(OmegaConf.create({"name": "corruptions", "options": {
        "corruptions": ["impulse_noise"], "severities": [3]}, "target": None}))
    model = torch.nn.Conv2d(3, 2, 1)
    images, labels = torch.rand(2, 3, 32, 32), torch.zeros(2, 32, 32, dtype=torch.long)
    (run, _), = attack.runs([])
    pair = attack.run(model, images, labels, eps=run, seed=(0, 0), image_indices=[4, 9])
    alone = attack.run(model, images[1:], labels[1:], eps=run, seed=(0, 5), image_indices=[9])
    assert torch.equal(pair.adv_images[1:], alone.adv_images)  # by its index, not its batch or the run's position
    other = attack.run(model, images[1:], labels[1:], eps=run, seed=(1, 0), image_indices=[9])
    assert not torch.equal(other.adv_images, alone.adv_images)  # attack.seed changes the draw


@pytest.mark.parametrize("override, message", [
    ("attack.options.corruptions=[rain]", "unknown rain"),
    ("attack.options.severities=[7]", "must be a list of integers 0-5"),
    ("attack.options.reference=/nonexistent", "not a finished corruption run"),
    ("++attack.options.bpda=true", "corruptions takes no gradient"),
])
def test_bad_corruption_options_are_one_line(tmp_path, override, message):
    with contextlib.chdir(tmp_path):
        code, out, err = call("evaluate", *BASE, "attack=corruptions", override)
    assert code == 2 and message in err and "Traceback" not in err, err
