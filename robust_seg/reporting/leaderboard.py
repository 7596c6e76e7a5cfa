"""Leaderboards of the zoo: every published model of a dataset under SEA, ranked, beside its paper's numbers.

``python -m robust_seg.evaluate -m experiment=zoo_<dataset>`` evaluates every entry of ``configs/model/zoo/``
trained on that dataset (one job per model, the sweep override ``model=zoo/<name>``);
``scripts/make_table.py zoo_<dataset> <multirun dir>`` builds the table: one row per model, ACC and mIoU of SEA's
worst case at 0, 4/255, 8/255 and 12/255, each cell "measured (paper, difference)", rows ranked by the measured
mIoU at 8/255 (then ACC at 8/255), as RobustBench ranks by robust accuracy at its threat model's radius. A zoo model
without a finished run is a numbered gap, ranked last. Rows come from the zoo and from the runs' recorded configs,
so a run of a model added to the zoo later still shows.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Iterable

from robust_seg.models.zoo import zoo_models
from robust_seg.reporting.paper_tables import ACC_MIOU, SEA_RADII
from robust_seg.reporting.published import paper_numbers
from robust_seg.reporting.render import FORMATS
from robust_seg.reporting.tables import (BuiltTable, Coordinates, RowSpec, Run, TableSpec, acc_miou_cells, build_table,
                                         collect_runs)

PREFIX = "zoo_"
RANK_RADIUS = "8/255"


def is_leaderboard(name: str) -> bool:
    return name.startswith(PREFIX)


def _recorded_zoo(run: Run) -> dict | None:
    config = ((run.results or {}).get("provenance") or {}).get("config") or {}
    return (config.get("model") or {}).get("zoo")


def leaderboard_spec(dataset: str, runs: Iterable[Run]) -> TableSpec:
    """The rows of ``dataset``'s leaderboard: its zoo models and every zoo model its runs evaluated."""
    experiment = f"{PREFIX}{dataset}"
    entries = {m.name: (m.threat_model, paper_numbers(m.paper_reference, m.readme)) for m in zoo_models(dataset)}
    for run in runs:
        recorded = _recorded_zoo(run)
        if run.experiment == experiment and run.coordinates.row and recorded:
            entries.setdefault(run.coordinates.row, (recorded.get("threat_model", "?"),
                                                     paper_numbers(recorded.get("paper"), recorded.get("readme"))))
    rows = []
    for name, (threat_model, paper) in sorted(entries.items()):
        published = None
        if paper and "radii" in paper:
            published = tuple(paper["radii"].get(radius, {}).get(metric) for radius in SEA_RADII
                              for metric in ("acc", "miou"))
        cells = tuple(c for radius in SEA_RADII for c in acc_miou_cells(Coordinates(row=name), radius))
        rows.append(RowSpec((name, threat_model), cells, published))
    columns = tuple((radius, metric) for radius in SEA_RADII for metric in ACC_MIOU)
    return TableSpec(experiment, experiment, f"Leaderboard: published {dataset} models under SEA, ranked by mIoU at "
                     f"{RANK_RADIUS}", ("rank", "model", "threat model"), columns, tuple(rows))


def ranked(table: BuiltTable) -> BuiltTable:
    """The rows sorted by measured mIoU, then ACC, at ``RANK_RADIUS`` (rows without a value last), numbered."""
    acc = table.spec.columns.index((RANK_RADIUS, "Acc"))
    miou = table.spec.columns.index((RANK_RADIUS, "mIoU"))

    def key(index: int):
        cells = table.cells[index]
        missing = cells[miou].value is None
        return (missing, -(cells[miou].value or 0.0), -(cells[acc].value or 0.0), table.spec.rows[index].labels)

    order = sorted(range(len(table.spec.rows)), key=key)
    rows = tuple(replace(table.spec.rows[i], labels=(str(rank + 1) if table.cells[i][miou].value is not None else "–",
                                                      *table.spec.rows[i].labels)) for rank, i in enumerate(order))
    return BuiltTable(replace(table.spec, rows=rows), [table.cells[i] for i in order], table.notes)


def make_leaderboard(name: str, directories: Iterable[str | Path], fmt: str = "md") -> str:
    """The leaderboard ``zoo_<dataset>`` built from the runs under ``directories``, rendered as ``fmt``."""
    runs = collect_runs(directories)
    spec = leaderboard_spec(name[len(PREFIX):], runs)
    return FORMATS[fmt](ranked(build_table(spec, runs)))
