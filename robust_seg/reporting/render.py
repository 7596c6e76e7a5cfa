"""A built table as Markdown, CSV or LaTeX: each cell "ours (paper, difference)", gaps numbered and explained."""
from __future__ import annotations

import csv
import io
import math
import re
from typing import Callable

from robust_seg.reporting.tables import BuiltTable, CellResult


def _number(value: float | None, decimals: int) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.{decimals}f}"


def _gap_index(table: BuiltTable) -> dict[str, int]:
    index: dict[str, int] = {}
    for reason in table.gaps():
        index.setdefault(reason, len(index) + 1)
    return index


def _cell_text(cell: CellResult, gaps: dict[str, int], decimals: int) -> str:
    ours = f"gap [{gaps[cell.gap]}]" if cell.gap else _number(cell.value, decimals)
    if cell.published is None:
        return ours
    difference = "" if cell.difference is None else f", {cell.difference:+.{decimals}f}"
    return f"{ours} ({_number(cell.published, decimals)}{difference})"


def to_markdown(table: BuiltTable) -> str:
    """Cells read 'ours (paper, ours - paper)'; gaps are numbered and explained below the table."""
    spec, gaps = table.spec, _gap_index(table)
    header = list(spec.row_header) + [" / ".join(label) for label in spec.columns]
    lines = [f"## {spec.title}", "", "Cells: ours (paper, difference).", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(spec.row_header) + "---:|" * len(spec.columns)]
    for row, cells in zip(spec.rows, table.cells):
        lines.append("| " + " | ".join(list(row.labels) + [_cell_text(c, gaps, spec.decimals) for c in cells]) + " |")
    if gaps:
        lines += ["", "Gaps:"] + [f"[{i}] {reason}" for reason, i in gaps.items()]
    if table.notes:
        lines += ["", "Notes:"] + [f"- {note}" for note in table.notes]
    return "\n".join(lines) + "\n"


def to_csv(table: BuiltTable) -> str:
    """One line per cell: row labels, column labels, ours, paper, difference, gap reason."""
    spec = table.spec
    stream = io.StringIO()
    writer = csv.writer(stream)
    column_depth = max(len(c) for c in spec.columns)
    writer.writerow(list(spec.row_header) + [f"column_{i + 1}" for i in range(column_depth)] +
                    ["ours", "paper", "difference", "gap"])
    for row, cells in zip(spec.rows, table.cells):
        for column, cell in zip(spec.columns, cells):
            padded = list(column) + [""] * (column_depth - len(column))
            writer.writerow(list(row.labels) + padded + [
                "" if cell.value is None else f"{cell.value:.4f}", "" if cell.published is None else cell.published,
                "" if cell.difference is None else f"{cell.difference:.4f}", cell.gap or ""])
    return stream.getvalue()


def _latex_escape(text: str) -> str:
    return re.sub(r"([&%$#_{}])", r"\\\1", text)


def to_latex(table: BuiltTable) -> str:
    """A tabular with 'ours (paper)' cells; gaps as footnote marks explained after the table."""
    spec, gaps = table.spec, _gap_index(table)
    lines = [f"% {spec.title}", "\\begin{tabular}{" + "l" * len(spec.row_header) + "r" * len(spec.columns) + "}",
             "\\hline",
             " & ".join([_latex_escape(h) for h in spec.row_header] +
                        [_latex_escape(" / ".join(c)) for c in spec.columns]) + " \\\\", "\\hline"]
    for row, cells in zip(spec.rows, table.cells):
        texts = [f"--$^{{{gaps[c.gap]}}}$" if c.gap else _number(c.value, spec.decimals) for c in cells]
        texts = [t if c.published is None else f"{t} ({_number(c.published, spec.decimals)})" for t, c in zip(texts, cells)]
        lines.append(" & ".join([_latex_escape(label) for label in row.labels] + texts) + " \\\\")
    lines += ["\\hline", "\\end{tabular}"] + [f"% ({i}) {_latex_escape(reason)}" for reason, i in gaps.items()]
    return "\n".join(lines) + "\n"


FORMATS: dict[str, Callable[[BuiltTable], str]] = {"md": to_markdown, "csv": to_csv, "latex": to_latex}
