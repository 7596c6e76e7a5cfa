"""Paper-table experiments and the table builder (robust_seg/reporting/tables.py, scripts/make_table.py).

Fast tests: every experiment x row x column composes with ``+scale=embedded`` (and, for the SEA-paper tables,
at paper scale with the paper's settings); the builder on hand-made run directories (every cell of every
table filled; closed-form subset worst cases; missing / failed / conflicting runs become gaps with reasons;
the three output formats); one real embedded multirun (Table 7) built into a table, then the same grid with
one job's results removed. Slow: every table's grid end to end on the embedded scale.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from robust_seg.reporting import published
from robust_seg.reporting.paper_tables import TABLES, make_table, table_spec
from robust_seg.reporting.render import to_csv, to_latex, to_markdown
from robust_seg.reporting.tables import Coordinates, build_table, collect_runs
from tests.conftest import ROOT, assert_markdown_tables, run_in_process

EXPERIMENTS = ROOT / "configs" / "experiment"

# The paper's layout of each table, written out independently of the builder: (rows, columns).
PAD_NOTE = "evaluation protocol: pad (robust_seg/data/protocols.py)"
"""Runs without a recorded protocol evaluated under ``pad``; every table names its protocol."""
EXPECTED_SHAPES = {
    "table1": (6, 8), "table2": (8, 14), "table3": (12, 8), "table4": (14, 8), "table7": (4, 8),
    "table8": (4, 8), "table9": (13, 8), "figure2": (6, 9), "thesis_5.1": (22, 8), "thesis_5.2": (10, 4),
    "thesis_6.2": (2, 6),
}
EXPECTED_LABELS = {
    "table1": ([("DDC-AT", "2/255"), ("DDC-AT", "4/255"), ("DDC-AT", "8/255"), ("PIR-AT (ours)", "4/255"),
                ("PIR-AT (ours)", "8/255"), ("PIR-AT (ours)", "12/255")],
               [("CosPGD (300 iter.)", "Acc"), ("CosPGD (300 iter.)", "mIoU"), ("SegPGD (300 iter.)", "Acc"),
                ("SegPGD (300 iter.)", "mIoU"), ("Mask-CE (300 iter.)", "Acc"), ("Mask-CE (300 iter.)", "mIoU"),
                ("SEA (4 x 300 iter.)", "Acc"), ("SEA (4 x 300 iter.)", "mIoU")]),
    "thesis_6.2": ([("ECE",), ("mIoU",)], [("CE",), ("ECP",), ("LS",), ("FL",), ("MbLS",), ("CALS",)]),
}
# Cells that stay gaps by design (no public model: SegPGD-AT).
DESIGNED_GAPS = {"table3": 8}


def _sweep(experiment: str) -> dict[str, list[str]]:
    """The experiment's sweep, its ``${paper_table_sweep:...}`` values resolved from the table's data file."""
    from omegaconf import OmegaConf

    from robust_seg.evaluation.config import EvaluateConfig
    from robust_seg.run.config import register_configs

    register_configs(evaluate=EvaluateConfig)
    params = OmegaConf.load(EXPERIMENTS / f"{experiment}.yaml").hydra.sweeper.params
    return {key: str(value).split(",") for key, value in OmegaConf.to_container(params, resolve=True).items()}


def _jobs_covering_every_value(experiment: str) -> list[list[str]]:
    """One job per value of each sweep axis (the other axes at their first value): every row and column config."""
    sweep = _sweep(experiment)
    first = {key: values[0] for key, values in sweep.items()}
    jobs = {tuple(f"{k}={value if k == key else first[k]}" for k in sweep) for key, values in sweep.items()
            for value in values}
    return [list(job) for job in sorted(jobs)]


def _compose_all(jobs: list[list[str]]) -> list:
    from hydra import compose, initialize_config_dir

    from robust_seg.evaluation.config import EvaluateConfig
    from robust_seg.run.config import register_configs

    register_configs(evaluate=EvaluateConfig)
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return [compose(config_name="evaluate", overrides=job) for job in jobs]


# ----------------------------------------------------------------------------------------------- configs
@pytest.mark.parametrize("spec", TABLES.values(), ids=lambda s: s.name)
def test_every_row_and_column_config_composes_on_the_embedded_scale(spec):
    sweep = _sweep(spec.experiment)
    grid = 1
    for values in sweep.values():
        grid *= len(values)
    assert grid == len(spec.expected_coordinates()), "the sweep and the table disagree on the grid"
    jobs = [[f"experiment={spec.experiment}", *job, "+scale=embedded"]
            for job in _jobs_covering_every_value(spec.experiment)]
    for cfg in _compose_all(jobs):
        assert cfg.model.name == "small_upernet_convnext" and cfg.dataset.name == "synthetic"
        assert cfg.max_images == 2 and cfg.attack.options.iterations == 6


def test_paper_scale_keeps_the_papers_settings():
    table1, sea, restarts, components = _compose_all([
        ["experiment=table1_sea_vs_baselines", "+experiment/table1_rows=voc_pspnet_r50_ddcat",
         "+experiment/table_columns=segpgd_300"],
        ["experiment=table3_robust_models", "+experiment/table_rows=ade_segmenter_vit_s_pirat_5step_128ep"],
        ["experiment=figure2_radius_schedules", "+experiment/table_columns=const_3x100", "attack.options.loss=js"],
        ["experiment=table9_sea_components", "+experiment/table9_rows=voc_upernet_convnext_t_pirat_5step_50ep",
         "+experiment/table_columns=sea_components"]])
    assert (table1.model.name, table1.dataset.name, table1.attack.name) == ("pspnet_r50_ddcat", "pascal_voc", "pgd")
    assert table1.model.checkpoint_format == "semseg_pspnet"
    assert list(table1.attack.eps) == ["2/255", "4/255", "8/255"]
    assert table1.attack.options.iterations == 300 and table1.attack.options.loss == "bal_ce"
    assert table1.attack.options.step_size == "paper"
    assert (sea.model.name, sea.dataset.name, sea.attack.name) == ("segmenter_vit_s", "ade20k", "sea")
    assert sea.attack.options.iterations == 300 and sea.attack.options.schedule == "red"
    assert sea.model.checkpoint.endswith("train/train_ade_segmenter_vit_s_pirat_5step_128ep/model.pt")
    assert (restarts.attack.options.iterations, restarts.attack.options.restarts) == (300, 3)
    assert restarts.model.name == "upernet_convnext_t" and list(restarts.attack.eps) == ["8/255", "12/255"]
    assert components.attack.options.skip_solved is False and len(components.attack.eps) == 4


# ----------------------------------------------------------------------------------------------- builder
def _fake_results(per_image: dict[str, dict[str, list[float]]], minimal_norm: dict | None = None) -> dict:
    """results.json with the given per-image ACC per radius and component (mIoU = ACC / 2)."""
    radii = {radius: {name: {"acc": sum(v) / len(v), "miou": sum(v) / len(v) / 2, "per_image_acc": v}
                      for name, v in components.items()} for radius, components in per_image.items()}
    results = {"radii": radii}
    if minimal_norm:
        results["minimal_norm"] = minimal_norm
    return results


def _write_run(path: Path, experiment: str, coordinates: Coordinates, results: dict | None, config: dict | None = None,
               log: str = "") -> Path:
    (path / ".hydra").mkdir(parents=True)
    overrides = [f"experiment={experiment}"]
    if coordinates.row:
        overrides.append(f"+experiment/some_rows={coordinates.row}")
    if coordinates.column:
        overrides.append(f"+experiment/table_columns={coordinates.column}")
    if coordinates.loss:
        overrides.append(f"attack.options.loss={coordinates.loss}")
    if coordinates.scenario:
        overrides.append(f"+experiment/thesis_scenarios={coordinates.scenario}")
        config = config or {"seed": 0, "attack": {"target": {"kind": "class", "class_index": 0}
                                                  if coordinates.scenario == "targeted" else None}}
    (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config or {"seed": 0}))
    if results is not None:
        (path / "results.json").write_text(json.dumps(results))
    if log:
        (path / "evaluate.log").write_text(log)
    return path


RADII = ("0", "0.25/255", "0.5/255", "1/255", "2/255", "4/255", "8/255", "12/255", "16/255")
COMPONENTS = ("worst_case", "ce", "bal_ce", "cossim_ce", "js", "mask_ce", "mask_sph")


def _complete_results() -> dict:
    results = _fake_results({r: {c: [10.0, 30.0] for c in COMPONENTS} for r in RADII},
                            {"median_x255": 0.5, "mean_x255": 0.75})
    results["calibration"] = {"radii": {"0": {"T=1": {"ece_dataset": 0.05}}}}
    return results


@pytest.mark.parametrize("spec", TABLES.values(), ids=lambda s: s.name)
def test_a_complete_grid_fills_every_cell_of_the_papers_layout(spec, tmp_path):
    for index, coordinates in enumerate(sorted(spec.expected_coordinates(), key=Coordinates.describe)):
        _write_run(tmp_path / str(index), spec.experiment, coordinates, _complete_results())
    table = build_table(spec, collect_runs([tmp_path]))
    assert (len(table.row_labels), len(table.column_labels)) == EXPECTED_SHAPES[spec.name]
    if spec.name in EXPECTED_LABELS:
        assert (table.row_labels, table.column_labels) == EXPECTED_LABELS[spec.name]
    assert len(table.gaps()) == DESIGNED_GAPS.get(spec.name, 0), table.gaps()
    assert table.notes == [PAD_NOTE]
    for row, cells in zip(spec.rows, table.cells):
        assert len(cells) == len(spec.columns)
        if row.published:
            assert len(row.published) == len(spec.columns), row.labels
        for cell in cells:
            if cell.gap is None:
                assert cell.value in (20.0, 10.0, 0.5, 0.75, 5.0)  # ACC and worst cases, mIoU, norms, ECE in %
                if cell.published is not None:
                    assert cell.difference == pytest.approx(cell.value - cell.published)


def test_published_numbers_are_those_of_the_papers():
    assert published.TABLE1[("PIR-AT (ours)", "8/255")][-2:] == (71.2, 37.0)
    assert published.TABLE3["voc_upernet_convnext_t_pirat_5step_50ep"] == (92.7, 75.2, 88.3, 63.8, 71.2, 37.0,
                                                                           27.4, 8.1)
    assert published.TABLE4["voc_upernet_convnext_t_pirat_5step_50ep"] == \
        published.TABLE3["voc_upernet_convnext_t_pirat_5step_50ep"]
    # Table 8's "all losses" row repeats Table 2's worst case over losses.
    worst = [published.TABLE2[("PIR-AT", r)][-2:] for r in ("4/255", "8/255", "12/255", "16/255")]
    assert published.TABLE8[("PIR-AT", "all losses")] == tuple(v for pair in worst for v in pair)
    assert published.THESIS_TABLE5_1[("untargeted", "alma_prox")] == (0.32, 0.34, 0.51, 0.56, 0.24, 0.26, 0.33, 0.33)
    assert published.THESIS_TABLE5_1[("targeted", "alma_prox")] == (0.25, 0.26, 0.32, 0.34, 1.15, 1.17, 0.65, 0.66)
    assert published.THESIS_TABLE5_2[("targeted", "dag_0001")] == (6.78, 8.78, 255.00, 230.29)
    assert published.THESIS_TABLE6_2["ECE"][-1] == 4.66


def test_subset_worst_cases_are_per_image_minima_averaged(tmp_path):
    accuracies = {"mask_ce": [50.0, 10.0, 30.0], "bal_ce": [40.0, 20.0, 35.0], "js": [60.0, 5.0, 25.0],
                  "mask_sph": [45.0, 15.0, 20.0]}
    worst = {"worst_case": [40.0, 5.0, 20.0]}
    row = "voc_upernet_convnext_t_pirat_5step_50ep"
    _write_run(tmp_path / "0", "table9_sea_components", Coordinates(row=row, column="sea_components"),
               _fake_results({"4/255": {**accuracies, **worst}}))
    table = build_table(table_spec("table9"), collect_runs([tmp_path]))
    first = table.cells[table.row_labels.index((table.spec.rows[0].labels[0], "4/255"))]
    assert [c.value for c in first] == pytest.approx([30.0, 95 / 3, 30.0, 80 / 3,  # individual losses
                                                      (40 + 5 + 25) / 3,  # A: mask_ce, bal_ce, js
                                                      (40 + 10 + 20) / 3,  # B: mask_ce, bal_ce, mask_sph
                                                      (45 + 5 + 20) / 3,  # C: mask_ce, js, mask_sph
                                                      65 / 3])  # SEA
    assert first[0].published == 89.0 and first[0].difference == pytest.approx(30.0 - 89.0)
    assert "no run with row=voc_upernet_convnext_t_pirat_5step_50ep, column=sea_components" not in table.gaps()
    assert any("radius 8/255" in gap for gap in table.gaps())  # the run lacks the other radii


def test_figure2_worst_case_combines_the_four_loss_runs_image_by_image(tmp_path):
    runs = {"mask_ce": [50.0, 10.0], "bal_ce": [40.0, 20.0], "js": [60.0, 5.0], "mask_sph": [45.0, 15.0]}
    for i, (loss, values) in enumerate(runs.items()):
        _write_run(tmp_path / str(i), "figure2_radius_schedules", Coordinates(column="red_300", loss=loss),
                   _fake_results({"8/255": {"worst_case": values}}))
    table = build_table(table_spec("figure2"), collect_runs([tmp_path]))
    red = table.cells[table.row_labels.index(("8/255", "red-eps, 300 iter."))]
    assert [c.value for c in red[:8:2]] == [30.0, 30.0, 32.5, 30.0]
    assert red[-1].value == pytest.approx((40 + 5) / 2)


def test_missing_failed_killed_and_conflicting_runs_become_explained_gaps(tmp_path):
    spec = table_spec("table7")
    results = _fake_results({r: {"worst_case": [10.0, 30.0]} for r in ("4/255", "8/255", "12/255", "16/255")})
    _write_run(tmp_path / "0", spec.experiment, Coordinates(column="segpgd_100"), results)
    _write_run(tmp_path / "1", spec.experiment, Coordinates(column="segapgd_100"), None,
               log="[INFO] start\nTraceback (most recent call last):\nValueError: 300 iterations cannot be split\n")
    state = tmp_path / "2"
    _write_run(state, spec.experiment, Coordinates(column="cospgd_100"), None)
    (state / "batches.jsonl").write_text('{"batch": 0}\n{"batch": 1}\n')
    # cosapgd_100: two runs with different configs (never mixed), plus one of another experiment.
    _write_run(tmp_path / "3", spec.experiment, Coordinates(column="cosapgd_100"), results, {"seed": 0})
    _write_run(tmp_path / "4", spec.experiment, Coordinates(column="cosapgd_100"), results, {"seed": 1})
    _write_run(tmp_path / "5", "table1_sea_vs_baselines", Coordinates(column="sea"), results)
    table = build_table(spec, collect_runs([tmp_path]))
    row = table.cells[0]
    assert row[0].value == 20.0 and row[1].value == 10.0
    assert "failed: ValueError: 300 iterations cannot be split" in row[2].gap
    assert "killed or still running after 2 batch(es)" in row[4].gap
    assert "2 runs with column=cosapgd_100 have different configs" in row[6].gap
    assert row[2].published == 88.7 and row[2].difference is None
    assert table.notes == ["1 run(s) of other experiments ignored", PAD_NOTE]
    markdown = to_markdown(table)
    assert "| 4/255 | 20.0 (88.6, -68.6) | 10.0 (65.0, -55.0) | gap [1] (88.7) |" in markdown
    assert assert_markdown_tables(markdown) == 1
    assert "[1] job 1 has no results.json (failed: ValueError: 300 iterations cannot be split)" in markdown
    # A re-run with the same config is the same cell (the newest result is read).
    rerun = _write_run(tmp_path / "6", spec.experiment, Coordinates(column="segpgd_100"), results)
    assert build_table(spec, collect_runs([tmp_path])).cells[0][0].value == 20.0 and rerun.exists()
    silent = _write_run(tmp_path / "7", spec.experiment, Coordinates(column="segpgd_100"), None)
    assert "failed or killed before its first batch" in collect_runs([silent])[0].problem
    no_run = build_table(spec, collect_runs([tmp_path / "0"]))
    assert no_run.cells[0][2].gap.startswith("no run with column=segapgd_100")


def test_thesis_tables_key_cells_on_the_scenario_and_never_mix_targeted_with_untargeted(tmp_path):
    spec = table_spec("thesis_5.2")
    norms = {"untargeted": {"median_x255": 0.78, "mean_x255": 2.17}, "targeted": {"median_x255": 0.5, "mean_x255": 0.6}}
    for index, scenario in enumerate(("untargeted", "targeted")):
        _write_run(tmp_path / str(index), spec.experiment, Coordinates(
            row="voc_deeplabv3_r50_ddcat", column="alma_prox", scenario=scenario), _fake_results({}, norms[scenario]))
    # A run without a recorded scenario is neither half of the table.
    _write_run(tmp_path / "2", spec.experiment, Coordinates(row="voc_deeplabv3_r50_ddcat", column="fmn"),
               _fake_results({}, norms["untargeted"]))
    # Recorded as targeted, but its attack had no target: a gap, not a targeted number.
    _write_run(tmp_path / "3", spec.experiment, Coordinates(row="voc_deeplabv3_r50_ddcat", column="pdpgd",
                                                            scenario="targeted"),
               _fake_results({}, norms["targeted"]), config={"seed": 0, "attack": {"target": None}})
    table = build_table(spec, collect_runs([tmp_path]))
    cells = {labels: row for labels, row in zip(table.row_labels, table.cells)}
    assert [c.value for c in cells[("untargeted", "ALMA prox")][:2]] == [0.78, 2.17]
    assert [c.value for c in cells[("targeted", "ALMA prox")][:2]] == [0.5, 0.6]
    assert cells[("targeted", "ALMA prox")][0].published == 0.52
    assert cells[("untargeted", "FMN Linf")][0].gap.startswith("no run with row=voc_deeplabv3_r50_ddcat, "
                                                               "column=fmn, scenario=untargeted")
    assert cells[("targeted", "PDPGD Linf")][0].gap == "job 3 is recorded as targeted but has no attack.target"
    assert table.notes == ["runs outside the table's grid ignored: row=voc_deeplabv3_r50_ddcat, column=fmn", PAD_NOTE]


def test_thesis_rows_take_the_scenarios_target():
    voc, voc_targeted, city_targeted, embedded = _compose_all([
        ["experiment=thesis_table5_1_minimal_norm", "+experiment/thesis_table5_1_rows=voc_deeplabv3plus_r50",
         "+experiment/table_columns=alma_prox", "+experiment/thesis_scenarios=untargeted"],
        ["experiment=thesis_table5_1_minimal_norm", "+experiment/thesis_table5_1_rows=voc_fcn_hrnetv2_w48",
         "+experiment/table_columns=pgd_ce_13x40", "+experiment/thesis_scenarios=targeted"],
        ["experiment=thesis_table5_2_minimal_norm_ddcat", "+experiment/thesis_table5_2_rows=cityscapes_deeplabv3_r50_ddcat",
         "+experiment/table_columns=dag_0003", "+experiment/thesis_scenarios=targeted"],
        ["experiment=thesis_table5_1_minimal_norm", "+experiment/thesis_table5_1_rows=cityscapes_segformer_mit_b3",
         "+experiment/table_columns=fmn", "+experiment/thesis_scenarios=targeted", "+scale=embedded"]])
    assert voc.attack.target is None and voc.dataset.name == "pascal_voc"
    assert dict(voc_targeted.attack.target) == {"kind": "class", "class_index": 0}
    assert voc_targeted.attack.name == "pgd_bs" and voc_targeted.model.name == "fcn_hrnetv2_w48"
    assert city_targeted.attack.target.kind == "map" and city_targeted.dataset.name == "cityscapes"
    assert city_targeted.attack.target.path.endswith("cityscapes/thesis_target.png")
    assert embedded.dataset.name == "synthetic" and embedded.attack.target.kind == "map"


def test_csv_and_latex_carry_every_cell(tmp_path):
    spec = table_spec("thesis_6.2")
    for config in ("ce", "ecp", "ls", "fl", "mbls"):
        results = _fake_results({"0": {"worst_case": [90.0]}})
        results["calibration"] = {"radii": {"0": {"T=1": {"ece_dataset": 0.1475}}}}
        _write_run(tmp_path / config, spec.experiment, Coordinates(row=config), results)
    table = build_table(spec, collect_runs([tmp_path]))
    lines = to_csv(table).splitlines()
    assert lines[0] == "metric,column_1,ours,paper,difference,gap" and len(lines) == 1 + 12
    assert lines[1] == "ECE,CE,14.7500,14.75,0.0000,"
    assert lines[6].startswith('ECE,CALS,,4.66,,"no run with row=cals_alm')
    latex = to_latex(table)
    assert "ECE & 14.75 (14.75) & 14.75 (5.15)" in latex and "--$^{1}$ (4.66)" in latex


def test_make_table_script_reports_unknown_tables(tmp_path):
    completed = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_table.py"), "table5", str(tmp_path)],
                               capture_output=True, text=True)
    assert completed.returncode == 2 and "unknown table 'table5'" in completed.stderr


# ----------------------------------------------------------------------------------------------- end to end
def _multirun(experiment: str, sweep_dir: Path, *extra: str, **env_set: str) -> subprocess.CompletedProcess:
    """The experiment's grid as ``python -m robust_seg.evaluate -m``: in this process unless environment variables
    are to be set (a real process then)."""
    command = ["-m", f"experiment={experiment}", "+scale=embedded", "logger=none", f"hydra.sweep.dir={sweep_dir}",
               *extra]
    if not (ROOT / "robust_seg" / "assets" / "small_upernet_convnext_synthetic.pt").exists():
        command.append("model.checkpoint=null")  # the shipped checkpoint is not there yet: random weights
    if not env_set:
        return run_in_process("evaluate", *command, cwd=sweep_dir.parent)
    env = dict(os.environ, WANDB_MODE="disabled", PYTHONPATH=str(ROOT), HYDRA_FULL_ERROR="1", **env_set)
    return subprocess.run([sys.executable, "-m", "robust_seg.evaluate", *command], cwd=sweep_dir.parent, env=env,
                          capture_output=True, text=True, timeout=1800)


def _check_embedded_table(name: str, sweep_dir: Path) -> None:
    spec = table_spec(name)
    # The thesis tables' Cityscapes targeted runs read ROBUST_SEG_THESIS_TARGET_MAP, which +scale=embedded points
    # at the shipped stand-in map; ROBUST_SEG_DATA points nowhere, so a run that ignored the scale would fail.
    env_set = {"ROBUST_SEG_DATA": str(sweep_dir.parent / "no_data")} if name.startswith("thesis_5.") else {}
    completed = _multirun(spec.experiment, sweep_dir, **env_set)
    assert completed.returncode == 0, completed.stderr[-3000:]
    runs = collect_runs([sweep_dir])
    table = build_table(spec, runs)
    assert (len(table.row_labels), len(table.column_labels)) == EXPECTED_SHAPES[name]
    assert len(table.gaps()) == DESIGNED_GAPS.get(name, 0), table.gaps()
    assert table.notes[-1] == "evaluation protocol: sea (robust_seg/data/protocols.py)"
    assert len(table.notes) == 1 or table.notes[0].startswith("EMBEDDED SCALE")
    if name.startswith("thesis_5."):
        # Both halves are filled, each from runs of its own scenario with the dataset's target.
        for (scenario, _), cells in zip(table.row_labels, table.cells):
            assert all(cell.value is not None and 0 <= cell.value <= 255 for cell in cells), (scenario, cells)
        for run in runs:
            described = run.results["attack_config"]
            if run.coordinates.scenario == "untargeted":
                assert "target=" not in described, described
            elif run.coordinates.row.startswith("cityscapes"):
                assert "target=map:" in described and described.endswith("synthetic_target_map.png)"), described
            else:
                assert "target=class:0" in described, described


def test_embedded_table7_end_to_end_and_with_one_job_lost(tmp_path):
    sweep_dir = tmp_path / "table7"
    _check_embedded_table("table7", sweep_dir)
    full = make_table("table7", [sweep_dir])
    assert full.count("gap [") == 0 and "| 16/255 |" in full
    lost = next(p for p in sorted(sweep_dir.iterdir()) if (p / ".hydra" / "overrides.yaml").exists() and
                "+experiment/table_columns=cospgd_100" in (p / ".hydra" / "overrides.yaml").read_text())
    (lost / "results.json").unlink()
    partial = build_table(table_spec("table7"), collect_runs([sweep_dir]))
    assert [cell.gap is not None for cell in partial.cells[0]] == [False] * 4 + [True] * 2 + [False] * 2
    assert all(f"job {lost.name} has no results.json" in g for g in partial.gaps())
    assert len(partial.gaps()) == 8  # CosPGD's ACC and mIoU at the 4 radii


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in TABLES if n != "table7"])
def test_embedded_grid_end_to_end(name, tmp_path):
    _check_embedded_table(name, tmp_path / name)


def test_labels_come_from_the_results_record_not_from_rewritable_files(tmp_path):
    """A later command rewriting .hydra/ cannot relabel finished numbers: the provenance in results.json wins;
    a run with random weights is named in the table's notes."""
    spec = TABLES["table7"]
    coordinates = sorted(spec.expected_coordinates(), key=Coordinates.describe)
    for index, coordinate in enumerate(coordinates):
        path = _write_run(tmp_path / str(index), spec.experiment, coordinate, _complete_results())
        results = json.loads((path / "results.json").read_text())
        results["provenance"] = {"overrides": yaml.safe_load((path / ".hydra" / "overrides.yaml").read_text()),
                                 "config": {"seed": 0}}
        results["random_weights"] = index == 0
        (path / "results.json").write_text(json.dumps(results))
        (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["experiment=something_else"]))
    table = build_table(spec, collect_runs([tmp_path]))
    assert len(table.gaps()) == DESIGNED_GAPS.get(spec.name, 0)
    assert table.notes and table.notes[0].startswith("RANDOM WEIGHTS: 1 run(s)") and "0" in table.notes[0]
    assert "RANDOM WEIGHTS" in make_table_text(table)


def make_table_text(table) -> str:
    from robust_seg.reporting.render import to_markdown

    return to_markdown(table)


def test_runs_of_different_protocols_in_one_column_are_named_in_a_note(tmp_path):
    """Table 3's rows evaluated under different protocols: the table says which rows used which, per column."""
    spec = table_spec("table3")
    rows = [row.cells[0].sources[0] for row in spec.rows if row.cells[0] is not None][:3]
    for index, (coordinates, protocol) in enumerate(zip(rows, ("sea", "sea", "pad"))):
        results = _complete_results()
        results["provenance"] = {"overrides": [f"experiment={spec.experiment}",
                                               f"+experiment/table_rows={coordinates.row}"],
                                 "config": {"seed": 0}, "dataset": {"protocol": {"name": protocol}}}
        _write_run(tmp_path / str(index), spec.experiment, coordinates, results)
    table = build_table(spec, collect_runs([tmp_path]))
    assert table.notes[0] == "evaluation protocol: pad, sea (robust_seg/data/protocols.py)"
    mixed = [note for note in table.notes if note.startswith("PROTOCOLS MIXED in column 0 Acc")]
    assert len(mixed) == 1 and "pad (" in mixed[0] and "sea (" in mixed[0] and "not comparable" in mixed[0]
    assert sum(note.startswith("PROTOCOLS MIXED") for note in table.notes) == 8  # every column of the three rows
