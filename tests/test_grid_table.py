"""The table of any grid (robust_seg/reporting/grid.py, ``python -m robust_seg.table``) on hand-made run directories:
varying overrides found and laid out, seeds pooled into mean and sample standard deviation, a difference on no
axis flagged and kept apart, conflicting configs and missing runs as gaps, the three formats and W&B. The real
2 x 2 grid end to end is in tests/test_entry_points.py."""
from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path

import pytest
import yaml

from robust_seg import table as table_command
from robust_seg.reporting.grid import GridError, build_grid, to_csv, to_latex, to_markdown
from tests.conftest import assert_markdown_tables


def fake_run(path: Path, overrides: list[str], acc: dict[str, float], config: dict | None = None,
             minimal_norm: dict | None = None) -> Path:
    """A finished run directory as the driver writes it: .hydra/overrides.yaml and results.json with provenance."""
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    radii = {radius: {"worst_case": {"acc": value, "miou": value / 2}} for radius, value in acc.items()}
    results = {"radii": radii, "random_weights": False,
               "provenance": {"overrides": overrides, "config": config or {"attack": {"name": "x"}}}}
    if minimal_norm:
        results["minimal_norm"] = minimal_norm
    (path / "results.json").write_text(json.dumps(results))
    return path


def grid_2x2(root: Path) -> dict[tuple[str, str], float]:
    values = {}
    for job, (attack, model) in enumerate([(a, m) for a in ("sea", "segpgd") for m in ("robust", "clean")]):
        value = 10.0 * job + 1.5
        fake_run(root / str(job), [f"attack={attack}", f"model={model}", "attack.options.iterations=2"],
                 {"0": 90.0 + job, "8/255": value}, {"attack": {"name": attack}, "model": {"name": model}})
        values[(attack, model)] = value
    return values


def test_the_varying_overrides_become_the_axes_and_cells_equal_the_results(tmp_path):
    values = grid_2x2(tmp_path / "grid")
    table = build_grid([tmp_path / "grid"], rows=["model"], columns=["attack"], radii=["8/255"], metrics=["acc"])
    assert table.rows == [("robust",), ("clean",)] and table.columns == [("sea", "8/255", "acc"),
                                                                        ("segpgd", "8/255", "acc")]
    assert [[c.mean for c in row] for row in table.cells] == [
        [values[("sea", "robust")], values[("segpgd", "robust")]],
        [values[("sea", "clean")], values[("segpgd", "clean")]]]
    assert table.fixed == {"attack.options.iterations": "2"} and not table.flags
    default = build_grid([tmp_path / "grid"])  # rows: the model; columns: attack x radius x metric
    assert default.row_axes == ("model",) and default.column_axes == ("attack", "radius", "metric")
    assert len(default.columns) == 2 * 2 * 2 and default.cells[1][1].mean == 91.0 / 2  # sea, clean, 0, mIoU


def test_a_difference_on_no_axis_is_flagged_and_never_pooled(tmp_path):
    grid_2x2(tmp_path / "grid")
    fake_run(tmp_path / "extra", ["attack=sea", "model=robust", "attack.options.iterations=2", "max_images=1"],
             {"8/255": 55.0}, {"attack": {"name": "sea"}, "max_images": 1})
    table = build_grid([tmp_path / "grid", tmp_path / "extra"], rows=["model"], columns=["attack"],
                       radii=["8/255"], metrics=["acc"])
    assert len(table.flags) == 1 and table.flags[0].startswith("max_images differs between the runs")
    assert table.row_axes == ("model", "max_images")  # kept apart: the flagged run has its own row
    cells = {row: [c.mean for c in cells] for row, cells in zip(table.rows, table.cells)}
    assert cells[("robust", "1")][0] == 55.0 and cells[("robust", "(default)")][0] == 1.5
    assert "Flagged:" in to_markdown(table)


def test_seeds_are_pooled_into_mean_and_sample_spread(tmp_path):
    accs = {0: 40.0, 1: 44.0, 2: 45.0}
    for seed, acc in accs.items():
        fake_run(tmp_path / "seeds" / str(seed), ["attack=sea", f"seed={seed}"], {"8/255": acc},
                 {"attack": {"name": "sea"}, "seed": seed})
    table = build_grid([tmp_path / "seeds"], metrics=["acc"])
    cell = table.cells[0][0]
    assert cell.mean == pytest.approx(statistics.fmean(accs.values()))
    assert cell.spread == pytest.approx(statistics.stdev(accs.values())) and len(cell.runs) == 3
    assert "43.0 ± 2.6 (n=3)" in to_markdown(table)
    by_seed = build_grid([tmp_path / "seeds"], rows=["seed"], metrics=["acc"])  # a seed on an axis is not pooled
    assert [row[0].mean for row in by_seed.cells] == list(accs.values())


def test_conflicting_configs_missing_runs_and_missing_radii_are_gaps_with_reasons(tmp_path):
    fake_run(tmp_path / "a" / "0", ["attack=sea"], {"8/255": 1.0}, {"attack": {"name": "sea", "steps": 1}})
    fake_run(tmp_path / "a" / "1", ["attack=sea"], {"8/255": 2.0}, {"attack": {"name": "sea", "steps": 2}})
    fake_run(tmp_path / "a" / "2", ["attack=pgd", "model=m"], {"0": 3.0}, {"attack": {"name": "pgd"}})
    (tmp_path / "a" / "3" / ".hydra").mkdir(parents=True)  # a killed job: no results.json
    (tmp_path / "a" / "3" / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["attack=apgd"]))
    (tmp_path / "a" / "3" / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"attack": {"name": "apgd"}}))
    table = build_grid([tmp_path / "a"], rows=["attack"], columns=["model"], radii=["8/255"], metrics=["acc"])
    text = to_markdown(table)
    gaps = table.gaps()
    assert any("have different configs (attack.steps)" in gap for gap in gaps)
    assert any("no run with attack=sea, model=m" in gap for gap in gaps)
    assert any("no worst_case acc at radius 8/255" in gap for gap in gaps)
    assert any("has no results.json" in gap for gap in gaps)
    assert assert_markdown_tables(text) == 1


def test_identical_reruns_are_one_run_the_newest(tmp_path):
    import os

    old = fake_run(tmp_path / "r" / "0", ["attack=sea"], {"8/255": 1.0})
    fake_run(tmp_path / "r" / "1", ["attack=sea"], {"8/255": 2.0})
    os.utime(old / "results.json", (1, 1))
    cell = build_grid([tmp_path / "r"], metrics=["acc"]).cells[0][0]
    assert cell.mean == 2.0 and cell.spread is None


def test_minimal_norm_runs_read_their_norm_statistics(tmp_path):
    for job, attack in enumerate(("alma_prox", "dag")):
        fake_run(tmp_path / "mn" / str(job), [f"attack={attack}"], {},
                 minimal_norm={"median_x255": 1.0 + job, "mean_x255": 2.0 + job})
    table = build_grid([tmp_path / "mn"])
    assert table.column_axes == ("attack", "metric")  # no radius: the norms do not depend on one
    assert [c.mean for c in table.cells[0]] == [1.0, 2.0, 2.0, 3.0]
    assert assert_markdown_tables(to_markdown(table)) == 1  # '||d||inf' escaped


def test_formats_and_the_command(tmp_path, capsys):
    values = grid_2x2(tmp_path / "grid")
    table = build_grid([tmp_path / "grid"], rows=["model"], columns=["attack"], radii=["8/255"], metrics=["acc"])
    rows = list(csv.DictReader(io.StringIO(to_csv(table))))
    assert {(r["attack"], r["model"]): float(r["mean"]) for r in rows} == values
    latex = to_latex(table)
    assert "\\begin{tabular}{lrr}" in latex and "8/255" in latex
    assert table_command.main([str(tmp_path / "grid"), "--rows", "model", "--columns", "attack", "--metrics",
                               "acc", "--radii", "8/255"]) == 0
    assert "| robust | 1.5 | 21.5 |" in capsys.readouterr().out
    assert table_command.main([str(tmp_path / "gr*"), "--format", "csv", "--output", str(tmp_path / "t.csv")]) == 0
    assert (tmp_path / "t.csv").read_text().startswith("model,attack,radius,metric,mean")
    for argv, message in (([str(tmp_path / "nothing")], "no such run directory"),
                          ([str(tmp_path / "grid"), "--rows", "loss"], "unknown axis 'loss'"),
                          ([str(tmp_path / "grid"), "--metrics", "apsr"], "unknown metric apsr")):
        assert table_command.main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert table_command.main([str(tmp_path / "grid"), "--layout", "table7"]) == 0  # a paper table's layout
    assert "run(s) of other experiments ignored" in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    with pytest.raises(GridError, match="no run directories"):
        build_grid([tmp_path / "empty"])


def test_the_table_goes_to_wandb_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    grid_2x2(tmp_path / "grid")
    assert table_command.main([str(tmp_path / "grid"), "--wandb", "offline", "--metrics", "acc"]) == 0
    run_files = list((tmp_path / "grid" / "table_wandb" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert run_files and run_files[0].stat().st_size > 0
