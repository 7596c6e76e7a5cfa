"""Published numbers of the paper tables this project reproduces, read from the tables' data files.

SEA paper = "Towards reliable evaluation and fast training of robust semantic segmentation models"
(Tables 1-4, 7-9); thesis = Chapter 5 (Tables 5.1, 5.2) and Chapter 6 (Table 6.2). The numbers are transcribed
once, in ``robust_seg/reporting/paper_tables/<table>.yaml`` (``paper`` of each row); here each table maps a row's
key to the row's values in column order; ``None`` is a cell the paper leaves empty ("–"). All values are
percentages (ACC, mIoU, ECE) or ||delta||_inf x 255.
"""
from __future__ import annotations

from robust_seg.reporting.paper_tables import table_data

Row = tuple[float | None, ...]


def _numbers(table: str, key) -> dict:
    return {key(row): tuple(row["paper"]) for row in table_data(table)["rows"]}


TABLE1: dict[tuple[str, str], Row] = _numbers("table1", lambda row: tuple(row["labels"]))
"""Per (model, radius): (ACC, mIoU) of CosPGD, SegPGD, Mask-CE (300 iter. each) and SEA (4 x 300)."""
TABLE2: dict[tuple[str, str], Row] = _numbers("table2", lambda row: tuple(row["labels"]))
"""Per (model, radius): (ACC, mIoU) of APGD (100 iter.) on the six losses and the worst case."""
TABLE3: dict[str, Row] = _numbers("table3", lambda row: row["config"])
"""Per row config: (ACC, mIoU) under SEA at 0, 4/255, 8/255, 12/255 (also TABLE4)."""
TABLE4: dict[str, Row] = _numbers("table4", lambda row: row["config"])
TABLE7: dict[str, Row] = _numbers("table7", lambda row: row["radius"])
"""Per radius: (ACC, mIoU) of SegPGD, SegAPGD, CosPGD, CosAPGD (100 iter. each)."""
TABLE8: dict[tuple[str, str], Row] = _numbers("table8", lambda row: tuple(row["labels"]))
"""Per (model, loss subset): (ACC, mIoU) at the model's four radii."""
TABLE9: dict[tuple[str, str], Row] = _numbers("table9", lambda row: (row["config"], row["radius"]))
"""Per (row config, radius): ACC of Mask-CE, Bal-CE, JS, Mask-Sph, subsets A, B, C and SEA."""
THESIS_TABLE5_1: dict[tuple[str, str], Row] = _numbers("thesis_5.1", lambda row: (row["scenario"], row["attack"]))
"""Per (scenario, attack): (median, mean) ||delta||_inf x 255 on each of the table's four models."""
THESIS_TABLE5_2: dict[tuple[str, str], Row] = _numbers("thesis_5.2", lambda row: (row["scenario"], row["attack"]))
THESIS_TABLE6_2: dict[str, Row] = _numbers("thesis_6.2", lambda row: row["metric"])
"""Per metric (ECE, mIoU): the value of each training loss (CE, ECP, LS, FL, MbLS, CALS)."""

SEA_TABLE_RADII = ("0", "4/255", "8/255", "12/255")
"""The radii of Tables 3 and 4, in their column order."""


README_SOURCE = "official README (nmndeep/Robust-Segmentation)"


def paper_summary(paper: dict | None) -> str:
    """Published numbers (``paper_numbers``) in words, each source named, e.g.
    ``paper: mIoU 75.2 clean, 37.0 at 8/255; README: mIoU 75.2 clean, 34.6 at 8/255``."""
    if not paper:
        return "–"
    if "minimal_norm" in paper:
        median, mean = paper["minimal_norm"]["untargeted"]["alma_prox"]
        return f"ALMA prox ‖δ‖∞ x255 median {median:.2f}, mean {mean:.2f}"
    parts = []
    for numbers in [paper, *paper.get("also", [])]:
        radii = numbers["radii"]
        metric = "miou" if any(v["miou"] is not None for v in radii.values()) else "acc"
        shown = [f"{v[metric]:.1f} {'clean' if k == '0' else 'at ' + k}" for k, v in radii.items()
                 if v[metric] is not None and k in ("0", "8/255")]
        source = "README" if "README" in numbers["source"] else "paper"
        parts.append(f"{source}: {'mIoU' if metric == 'miou' else 'ACC'} " + ", ".join(shown))
    return "; ".join(parts)


def paper_numbers(reference: str | None, readme: dict | None = None) -> dict | None:
    """The published numbers of a zoo entry (``configs/model/zoo/*.yaml``) as the ``paper`` entry of
    ``results.json``: those its ``paper`` reference names, and under ``also`` those the official README lists for
    the same file (``readme``: mIoU per radius), each with its ``source``; None when it has neither.
    """
    paper = _table_numbers(reference)
    if readme:
        other = {"source": README_SOURCE,
                 "radii": {str(radius): {"acc": None, "miou": float(value)} for radius, value in readme.items()}}
        if paper is None:
            return other
        paper["also"] = [other]
    return paper


def _table_numbers(reference: str | None) -> dict | None:
    """The numbers a ``paper`` reference names; None for no reference. References:

    * ``sea_table3/<row>``, ``sea_table4/<row>``: ACC and mIoU under SEA at 0, 4/255, 8/255, 12/255;
    * ``sea_table9/<row>``: SEA's ACC at the row's radii (Table 9 reports ACC only);
    * ``thesis_table5_1/<column 0-3>``: (median, mean) ||delta||_inf x 255 of each attack, per scenario.
    """
    if not reference:
        return None
    table, _, row = reference.partition("/")
    if table in ("sea_table3", "sea_table4"):
        values = {"sea_table3": TABLE3, "sea_table4": TABLE4}[table].get(row)
        if values is None:
            raise KeyError(f"no row {row!r} in {table}")
        return {"source": f"SEA paper Table {table[-1]} ({row})",
                "radii": {radius: {"acc": values[2 * i], "miou": values[2 * i + 1]}
                          for i, radius in enumerate(SEA_TABLE_RADII)}}
    if table == "sea_table9":
        radii = {radius: {"acc": values[-1], "miou": None} for (name, radius), values in TABLE9.items() if name == row}
        if not radii:
            raise KeyError(f"no row {row!r} in {table}")
        return {"source": f"SEA paper Table 9 ({row}; ACC only)", "radii": radii}
    if table == "thesis_table5_1":
        column = int(row)
        norms: dict[str, dict[str, list[float]]] = {}
        for (scenario, attack), values in THESIS_TABLE5_1.items():
            norms.setdefault(scenario, {})[attack] = [values[2 * column], values[2 * column + 1]]
        return {"source": f"thesis Table 5.1 (column {column + 1})", "minimal_norm": norms}
    raise KeyError(f"unknown paper table {table!r} (choose from sea_table3, sea_table4, sea_table9, thesis_table5_1)")
