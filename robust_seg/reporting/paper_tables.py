"""The papers' tables: rows, labels and published numbers from one data file per table, laid out as ``TableSpec``.

Each table is ``robust_seg/reporting/paper_tables/<name>.yaml``: its experiment config, title, row header, rows
(labels, the row config they read, the paper's numbers) and columns. That one file is read by the experiment
config (its sweep: ``${paper_table_sweep:<name>,rows|columns}``), by this module (the layout), by
``robust_seg.reporting.published`` (the numbers) and by ``scripts/reproduce.sh`` (which experiment runs a table).
How a table's cells read the results (radius, component, metric) is its layout function here.

Choices documented here (the papers are silent):
- Table 8's clean-model row uses the radii of Table 2 (0.25/255 .. 2/255): its numbers equal Table 2's
  worst case there, although the table's header reads 4/255 .. 16/255.
- Table 9's subsets A, B, C: per image, the lowest ACC among the subset's losses, averaged over images
  (SEA's worst case restricted to the subset), from the per-image accuracies of one SEA run in which every
  loss ran on every image (``skip_solved=false``).
- Figure 2 (a plot in the paper, no published numbers) is laid out as a table: rows radius x scheme,
  columns the loss's ACC and mIoU and the ACC of the image-wise worst case over the four loss runs.
- Thesis Table 6.2's ECE is the dataset-level pixel-wise ECE with 15 bins, in %.
- Thesis Tables 5.1 and 5.2: targeted runs use the thesis' targets (Sec. 5.5.4): Pascal VOC, every pixel to
  background (class 0); Cityscapes, one fixed map, the per-pixel majority label over the training set, smoothed
  (the thesis' hand-smoothed map is not published: ``robust_seg.attacks.targets.write_majority_target`` computes
  the substitute). The thesis runs every attack of both tables in both scenarios, so no cell is a gap by design.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Iterable

import yaml

from robust_seg.names import ALL_LOSSES, SEA_LOSSES, WORST, loss_label
from robust_seg.reporting.render import FORMATS
from robust_seg.reporting.tables import (SCENARIOS, CellSpec, Coordinates, RowSpec, TableSpec, acc_miou_cells,
                                         build_table, calibration_error, collect_runs, metric, norm_statistic,
                                         worst_case_acc)

DATA = Path(__file__).resolve().parent / "paper_tables"
ACC_MIOU = ("Acc", "mIoU")
SEA_RADII = ("0", "4/255", "8/255", "12/255")


@lru_cache(maxsize=None)
def table_data(name: str) -> dict:
    """The data file of table ``name`` (``table1`` ... ``thesis_6.2``)."""
    path = DATA / f"{name}.yaml"
    if not path.is_file():
        raise KeyError(f"unknown table '{name}'; known: {', '.join(table_names())}")
    return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # C parser if built


def table_names() -> list[str]:
    return sorted(path.stem for path in DATA.glob("*.yaml"))


def sweep_values(name: str, part: str) -> str:
    """``${paper_table_sweep:NAME,PART}`` in an experiment's sweep: the row configs (``rows``, without the rows that
    have no public model) or the column configs (``columns``) of table ``name``, comma-separated, in table order."""
    data = table_data(name)
    if part == "rows":
        configs = [row["config"] for row in data["rows"] if "config" in row and "missing" not in row]
        configs += [model["config"] for model in data.get("models", [])]
    elif part == "columns":
        configs = [column["config"] for column in data["columns"]]
    else:
        raise KeyError(f"paper_table_sweep:{name},{part}: part must be rows or columns")
    return ",".join(dict.fromkeys(configs))


def _spec(data: dict, rows: Iterable[RowSpec], columns) -> TableSpec:
    return TableSpec(data["name"], data["experiment"], data["title"], tuple(data["header"]), tuple(columns),
                     tuple(rows), decimals=data.get("decimals", 1))


def _paper(row: dict):
    return tuple(row["paper"]) if row.get("paper") is not None else None


# ----------------------------------------------------------------------------------------------- layouts
def _attack_columns(data: dict) -> TableSpec:
    """Tables 1 and 7: per row radius, ACC and mIoU of each attack column (Table 7: one model, no row sweep)."""
    rows = (RowSpec(tuple(row["labels"]), tuple(c for column in data["columns"] for c in acc_miou_cells(
        Coordinates(row=row.get("config"), column=column["config"]), row["radius"])), _paper(row))
        for row in data["rows"])
    metrics = ACC_MIOU if data["name"] == "table1" else ("ACC", "mIoU")
    return _spec(data, rows, ((column["label"], m) for column in data["columns"] for m in metrics))


def _losses(data: dict) -> TableSpec:
    """Table 2: per model and radius, APGD's ACC and mIoU on each of the six losses and their worst case."""
    losses, column = (*ALL_LOSSES, WORST), data["columns"][0]["config"]
    rows = (RowSpec(tuple(row["labels"]), tuple(c for loss in losses for c in acc_miou_cells(
        Coordinates(row=row["config"], column=column), row["radius"], loss)), _paper(row)) for row in data["rows"])
    return _spec(data, rows, ((loss_label(loss) if loss != WORST else "worst case over losses", m)
                              for loss in losses for m in ACC_MIOU))


def _sea_models(data: dict) -> TableSpec:
    """Tables 3 and 4: one SEA run per trained model, ACC and mIoU at 0, 4/255, 8/255, 12/255."""
    rows = (RowSpec(tuple(row["labels"]), (None,) * 8 if "missing" in row else tuple(
        c for radius in SEA_RADII for c in acc_miou_cells(Coordinates(row=row["config"]), radius)), _paper(row),
        row.get("missing")) for row in data["rows"])
    return _spec(data, rows, ((radius, m) for radius in SEA_RADII for m in ACC_MIOU))


def _loss_subsets(data: dict) -> TableSpec:
    """Table 8: per model and loss subset, the worst case's ACC and mIoU at the model's four radii."""
    rows = (RowSpec(tuple(row["labels"]), tuple(c for radius in row["radii"] for c in acc_miou_cells(
        Coordinates(row=row["config"], column=row["column"]), radius)), _paper(row)) for row in data["rows"])
    clean, robust = ([row["radii"] for row in data["rows"] if row["labels"][0] == model][0]
                     for model in ("clean", "PIR-AT"))
    return _spec(data, rows, ((f"eps #{i + 1} ({a} / {b})", m) for i, (a, b) in enumerate(zip(clean, robust))
                              for m in ACC_MIOU))


def _sea_components(data: dict) -> TableSpec:
    """Table 9: per model and radius, the ACC of each SEA loss, of the three-loss subsets and of SEA."""
    subsets, column = data["subsets"], data["columns"][0]["config"]
    rows = []
    for row in data["rows"]:
        radius, source = row["radius"], (Coordinates(row=row["config"], column=column),)
        cells = tuple(CellSpec(source, metric(radius, "acc", loss)) for loss in SEA_LOSSES) + tuple(
            CellSpec(source, worst_case_acc(radius, losses)) for losses in subsets.values()) + (
            CellSpec(source, metric(radius, "acc")),)
        rows.append(RowSpec(tuple(row["labels"]), cells, _paper(row)))
    columns = tuple(("individual losses", loss_label(loss)) for loss in SEA_LOSSES) + tuple(
        ("subsets of three losses", f"{name}: " + " + ".join(loss_label(l) for l in losses))
        for name, losses in subsets.items()) + (("all (SEA)", "SEA"),)
    return _spec(data, rows, columns)


def _schedules(data: dict) -> TableSpec:
    """Figure 2 as a table: per radius and schedule, each loss run's ACC and mIoU and their image-wise worst ACC."""
    rows = []
    for radius in data["radii"]:
        for column in data["columns"]:
            sources = tuple(Coordinates(column=column["config"], loss=loss) for loss in SEA_LOSSES)
            cells = tuple(c for source in sources for c in acc_miou_cells(source, radius)) + (
                CellSpec(sources, worst_case_acc(radius, (WORST,) * len(SEA_LOSSES))),)
            rows.append(RowSpec((radius, column["label"]), cells))
    columns = tuple((loss_label(loss), m) for loss in SEA_LOSSES for m in ("ACC", "mIoU")) + (
        ("worst case over losses", "ACC"),)
    return _spec(data, rows, columns)


def _minimal_norm(data: dict) -> TableSpec:
    """Thesis Tables 5.1 / 5.2: median and mean ||delta||_inf x 255 per scenario and attack (rows) and model
    (columns); each cell reads the run of its model, attack and scenario (``+experiment/thesis_scenarios``)."""
    assert [row["scenario"] for row in data["rows"]][::len(data["columns"])] == list(SCENARIOS)
    rows = (RowSpec(tuple(row["labels"]), tuple(
        CellSpec((Coordinates(row=model["config"], column=row["attack"], scenario=row["scenario"]),),
                 norm_statistic(statistic)) for model in data["models"] for statistic in ("median", "mean")),
        _paper(row)) for row in data["rows"])
    return _spec(data, rows, ((model["label"], s) for model in data["models"] for s in ("median", "mean")))


def _calibration(data: dict) -> TableSpec:
    """Thesis Table 6.2: the ECE and mIoU of each training loss's model (columns)."""
    readers = {"ECE": calibration_error, "mIoU": metric("0", "miou")}
    rows = (RowSpec(tuple(row["labels"]), tuple(CellSpec((Coordinates(row=column["config"]),), readers[row["metric"]])
                                                for column in data["columns"]), _paper(row)) for row in data["rows"])
    return _spec(data, rows, ((column["label"],) for column in data["columns"]))


LAYOUTS = {"table1": _attack_columns, "table2": _losses, "table3": _sea_models, "table4": _sea_models,
           "table7": _attack_columns, "table8": _loss_subsets, "table9": _sea_components, "figure2": _schedules,
           "thesis_5.1": _minimal_norm, "thesis_5.2": _minimal_norm, "thesis_6.2": _calibration}
TABLES: dict[str, TableSpec] = {name: layout(table_data(name)) for name, layout in LAYOUTS.items()}


def table_spec(name: str) -> TableSpec:
    """A table by its short name (``table1``, ``thesis_5.1``, ...) or its experiment config's name."""
    for spec in TABLES.values():
        if name in (spec.name, spec.experiment):
            return spec
    known = ", ".join(f"{s.name} ({s.experiment})" for s in TABLES.values())
    raise KeyError(f"unknown table '{name}'; known: {known}")


def make_table(name: str, directories: Iterable[str | Path], fmt: str = "md") -> str:
    """The table ``name`` built from the runs under ``directories``, rendered as ``fmt`` (md, csv, latex)."""
    return FORMATS[fmt](build_table(table_spec(name), collect_runs(directories)))
