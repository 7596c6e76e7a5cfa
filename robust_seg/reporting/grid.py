"""A table from any set of runs: the overrides that vary between them laid out as rows and columns.

``python -m robust_seg.table <run or multirun dirs...>`` (``robust_seg/table.py``) reads every run below the given
directories, finds the overrides whose values differ between them (``attack``, ``model``, ``attack.options.loss``,
...) and lays them out with three axes that every evaluation has: ``radius``, ``metric`` (``acc``, ``miou``;
``median_norm`` and ``mean_norm`` of a minimal-norm attack) and ``component`` (an ensemble's losses; by default only
its image-wise worst case). Rules:

- Default layout: rows are the varying model overrides (``model``, ``model.*``, ``dataset``), columns the other
  varying overrides, then radius x metric.
- A varying seed (``seed`` or any ``*.seed`` override) that is on no axis is pooled: a cell is the mean over the
  seeds, with the sample standard deviation and the number of runs.
- Anything else that differs between runs and is on no axis is never pooled: the override is flagged and added to
  the rows, so that its runs stay apart. Runs with the same axis values and seed but different configurations (e.g.
  a default changed between two launches) are a gap that names the differing keys; identical re-runs are one run,
  the newest.
- A missing run, a run without ``results.json`` and a radius a run did not evaluate are numbered gaps with the
  reason, as in the paper tables (``robust_seg.reporting.tables``).
"""
from __future__ import annotations

import csv
import io
import math
import re
import statistics
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Iterable, Sequence

from robust_seg.names import MINIMAL_NORM_KEY, WORST
from robust_seg.reporting.tables import IGNORED_CONFIG_KEYS, Run, collect_runs

RADIUS, METRIC, COMPONENT = "radius", "metric", "component"
CORRUPTION, SEVERITY = "corruption", "severity"
"""The result axes of common-corruption runs (``attack=corruptions``), whose results keys are ``<corruption>/<s>``."""
RESULT_AXES = (RADIUS, METRIC, COMPONENT, CORRUPTION, SEVERITY)
RADIUS_METRICS = {"acc": "ACC (%)", "miou": "mIoU (%)"}
NORM_METRICS = {"median_norm": "median ||d||inf x255", "mean_norm": "mean ||d||inf x255"}
METRICS = {**RADIUS_METRICS, **NORM_METRICS}
MODEL_KEYS = re.compile(r"^(model|model\..+|dataset|experiment/\w+_rows)$")
UNSET = "(default)"


class GridError(ValueError):
    """The runs cannot make the requested table (no runs, an unknown axis or metric): one line for the user."""


def override_key(override: str) -> tuple[str, str]:
    """``++attack.options.iterations=2`` -> (``attack.options.iterations``, ``2``)."""
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


def is_seed(key: str) -> bool:
    return key == "seed" or key.endswith(".seed")


NOT_AXES = ("attack.options.reference",)
"""Overrides that change no cell (a corruption run's reference only adds its CE)."""


def _ignored(key: str) -> bool:
    return key.split(".")[0].split("/")[0] in IGNORED_CONFIG_KEYS or key.startswith("hydra") or key in NOT_AXES


def _flatten(config: dict, prefix: str = "") -> dict[str, object]:
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _natural(path: Path) -> tuple:
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path)))


@dataclass
class GridRun:
    run: Run
    settings: dict[str, str]  # every override key (ignored ones left out) -> its value

    def axis_value(self, key: str) -> str:
        return self.settings.get(key, UNSET)


@dataclass
class GridCell:
    mean: float | None = None
    spread: float | None = None  # sample standard deviation over seeds (None: one run)
    runs: tuple[Path, ...] = ()
    gap: str | None = None


@dataclass
class GridTable:
    title: str
    row_axes: tuple[str, ...]
    column_axes: tuple[str, ...]
    rows: list[tuple[str, ...]]
    columns: list[tuple[str, ...]]
    cells: list[list[GridCell]]
    decimals: int = 1
    fixed: dict[str, str] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def gaps(self) -> dict[str, int]:
        index: dict[str, int] = {}
        for row in self.cells:
            for cell in row:
                if cell.gap:
                    index.setdefault(cell.gap, len(index) + 1)
        return index


def _read(results: dict, radius: str, metric: str, component: str) -> float:
    """One number of one run's results (``results.json``); KeyError with the reason when it lacks it."""
    if metric in NORM_METRICS:
        if MINIMAL_NORM_KEY not in results:
            raise KeyError(f"{metric} needs a minimal-norm attack's run")
        return results[MINIMAL_NORM_KEY][metric.replace("_norm", "_x255")]
    if MINIMAL_NORM_KEY in results and component == WORST:
        raise KeyError("a minimal-norm run has no ACC per radius (use --metrics median_norm,mean_norm)")
    try:
        return results["radii"][radius][component][metric]
    except KeyError:
        raise KeyError(f"no {component} {metric} at radius {radius} in the results") from None


def _axis_values(runs: Sequence[GridRun], axis: str, radii: list[str], metrics: list[str],
                 components: list[str]) -> list[str]:
    if axis == RADIUS:
        return radii
    if axis == METRIC:
        return metrics
    if axis == COMPONENT:
        return components
    if axis in (CORRUPTION, SEVERITY):
        return list(dict.fromkeys(key.split("/")[axis == SEVERITY] for key in radii if "/" in key))
    return list(dict.fromkeys(run.axis_value(axis) for run in runs))


def _result_values(runs: Sequence[GridRun], radii: Sequence[str] | None, metrics: Sequence[str] | None,
                   components: Sequence[str] | None) -> tuple[list[str], list[str], list[str]]:
    done = [run.run.results for run in runs if run.run.results]
    if radii is None:
        radii = list(dict.fromkeys(key for results in done for key in results.get("radii", {})))
    if metrics is None:
        minimal = [MINIMAL_NORM_KEY in results for results in done]
        metrics = list(NORM_METRICS) if minimal and all(minimal) else list(RADIUS_METRICS)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise GridError(f"unknown metric {', '.join(unknown)}: choose from {', '.join(METRICS)}")
    if components is None:
        components = [WORST]
    elif list(components) == ["all"]:
        components = list(dict.fromkeys(name for results in done for entry in results.get("radii", {}).values()
                                        for name in entry))
    return list(radii), list(metrics), list(components)


def build_grid(directories: Iterable[str | Path], rows: Sequence[str] | None = None,
               columns: Sequence[str] | None = None, radii: Sequence[str] | None = None,
               metrics: Sequence[str] | None = None, components: Sequence[str] | None = None,
               decimals: int = 1) -> GridTable:
    """The table of the runs under ``directories``; ``rows`` / ``columns`` are override keys or the result axes
    ``radius``, ``metric``, ``component`` (None: the default layout); ``radii``, ``metrics`` and ``components``
    select their values (None: every radius the runs evaluated, ACC and mIoU, the worst case; ``["all"]``
    components: every loss of an ensemble)."""
    directories = list(directories)
    loaded = sorted(collect_runs(directories), key=lambda run: _natural(run.path))
    if not loaded:
        raise GridError("no run directories (with .hydra/) under " + ", ".join(map(str, directories)))
    runs = [GridRun(run, {key: value for key, value in map(override_key, run.overrides) if not _ignored(key)})
            for run in loaded]
    keys = list(dict.fromkeys(key for run in runs for key in run.settings))
    varying = [key for key in keys if len({run.axis_value(key) for run in runs}) > 1]
    fixed = {key: runs[0].settings[key] for key in keys if key not in varying}
    for axis in [*(rows or ()), *(columns or ())]:
        if axis not in RESULT_AXES and axis not in keys:
            raise GridError(f"unknown axis '{axis}': choose from {', '.join([*RESULT_AXES, *varying])} "
                            "(the overrides that vary between these runs, and the result axes)")
    seeds = [key for key in varying if is_seed(key)]
    placed = set(rows or ()) | set(columns or ())
    if rows is None:
        rows = [key for key in varying if MODEL_KEYS.match(key) and key not in placed and key not in seeds]
    if columns is None:
        columns = [key for key in varying if key not in rows and key not in seeds and key not in placed]
    rows, columns = list(rows), list(columns)
    radii, metrics, components = _result_values(runs, radii, metrics, components)
    result_axes = (METRIC,) if all(metric in NORM_METRICS for metric in metrics) else (RADIUS, METRIC)
    done = [run.run.results for run in runs if run.run.results]
    if done and all("corruptions" in results for results in done):  # rows: corruption; columns: severity x metric
        result_axes = (SEVERITY, METRIC)
        if CORRUPTION not in rows + columns and RADIUS not in rows + columns:
            rows.insert(0, CORRUPTION)
    columns += [axis for axis in result_axes if axis not in rows and axis not in columns]
    flags = []
    for key in varying:
        if key not in rows and key not in columns and key not in seeds:
            values = ", ".join(dict.fromkeys(run.axis_value(key) for run in runs))
            flags.append(f"{key} differs between the runs ({values}) but is on no axis: added to the rows so that "
                         "its runs are not pooled (place it with --rows or --columns)")
            rows.append(key)
    pooled = [key for key in seeds if key not in rows and key not in columns]
    values = {axis: _axis_values(runs, axis, radii, metrics, components) for axis in rows + columns}
    row_labels = list(product(*(values[axis] for axis in rows))) or [()]
    column_labels = list(product(*(values[axis] for axis in columns))) or [()]
    cells = [[_cell(runs, dict(zip(rows, row)) | dict(zip(columns, column)), pooled)
              for column in column_labels] for row in row_labels]
    notes = _notes(runs, pooled)
    title = f"{len(loaded)} run(s) under " + ", ".join(map(str, directories))
    return GridTable(title, tuple(rows), tuple(columns), row_labels, column_labels, cells, decimals, fixed, flags,
                     notes)


def _cell(runs: Sequence[GridRun], where: dict[str, str], pooled: Sequence[str]) -> GridCell:
    settings = {key: value for key, value in where.items() if key not in RESULT_AXES}
    chosen = [run for run in runs if all(run.axis_value(k) == v for k, v in settings.items())]
    if not chosen:
        return GridCell(gap="no run with " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    by_seed: dict[tuple, list[GridRun]] = {}
    for run in chosen:
        by_seed.setdefault(tuple(run.axis_value(key) for key in pooled), []).append(run)
    picked = []
    for same in by_seed.values():
        finished = [run for run in same if run.run.results is not None]
        if not finished:
            return GridCell(gap=same[-1].run.problem)
        differing = _differing_keys([run.run.config for run in finished])
        if differing:
            return GridCell(gap=f"{len(finished)} runs with the same axis values have different configs "
                                f"({', '.join(differing[:4])}): " + ", ".join(str(r.run.path) for r in finished))
        picked.append(max(finished, key=lambda run: run.run.path.stat().st_mtime))  # an identical re-run: newest
    try:
        radius = f"{where[CORRUPTION]}/{where[SEVERITY]}" if CORRUPTION in where else where.get(RADIUS, "0")
        numbers = [float(_read(run.run.results, radius, where[METRIC], where.get(COMPONENT, WORST)))
                   for run in picked]
    except KeyError as error:
        return GridCell(gap=str(error.args[0]))
    spread = statistics.stdev(numbers) if len(numbers) > 1 else None
    return GridCell(statistics.fmean(numbers), spread, tuple(run.run.path for run in picked))


def _differing_keys(configs: Sequence[dict]) -> list[str]:
    flat = [_flatten(config) for config in configs]
    keys = dict.fromkeys(key for f in flat for key in f)
    return [key for key in keys if not is_seed(key) and len({repr(f.get(key)) for f in flat}) > 1]


def _notes(runs: Sequence[GridRun], pooled: Sequence[str]) -> list[str]:
    notes = []
    if pooled:
        notes.append("cells over several seeds (" + ", ".join(pooled) + ") are mean ± sample standard deviation "
                     "(n runs)")
    random = [run.run.path.name for run in runs if (run.run.results or {}).get("random_weights")]
    if random:
        notes.insert(0, f"RANDOM WEIGHTS: {len(random)} run(s) evaluated a model without trained weights "
                        f"({', '.join(random)}); their numbers say nothing about a trained model")
    protocols = {((run.run.results or {}).get("provenance", {}).get("dataset") or {}).get("protocol", {}).get("name")
                 for run in runs if run.run.results}
    if len(protocols - {None}) > 1:
        notes.append("PROTOCOLS MIXED: " + ", ".join(sorted(protocols - {None})) + ": runs of different "
                     "evaluation protocols are not comparable")
    return notes


# ----------------------------------------------------------------------------------------------- rendering
def _label(axis: str, value: str) -> str:
    if axis == METRIC:
        return METRICS.get(value, value)
    return value


def _text(cell: GridCell, gaps: dict[str, int], decimals: int) -> str:
    if cell.gap:
        return f"gap [{gaps[cell.gap]}]"
    if cell.mean is None or math.isnan(cell.mean):
        return "–"
    if cell.spread is None:
        return f"{cell.mean:.{decimals}f}"
    return f"{cell.mean:.{decimals}f} ± {cell.spread:.{decimals}f} (n={len(cell.runs)})"


def _escape_md(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(table: GridTable) -> str:
    gaps = table.gaps()
    header = [*table.row_axes] or ["runs"]
    header += [" / ".join(_label(a, v) for a, v in zip(table.column_axes, column)) for column in table.columns]
    lines = [f"## {table.title}", "", f"Rows: {', '.join(table.row_axes) or '-'}. "
             f"Columns: {' x '.join(table.column_axes) or '-'}.", ""]
    if table.fixed:
        lines += ["Same in every run: " + ", ".join(f"`{k}={v}`" for k, v in table.fixed.items()) + ".", ""]
    lines += ["| " + " | ".join(_escape_md(h) for h in header) + " |",
              "|" + "---|" * max(len(table.row_axes), 1) + "---:|" * len(table.columns)]
    for row, cells in zip(table.rows, table.cells):
        labels = [_label(a, v) for a, v in zip(table.row_axes, row)] or ["all"]
        lines.append("| " + " | ".join(_escape_md(t) for t in labels + [_text(c, gaps, table.decimals)
                                                                         for c in cells]) + " |")
    if gaps:
        lines += ["", "Gaps:"] + [f"[{i}] {_escape_md(reason)}" for reason, i in gaps.items()]
    if table.flags:
        lines += ["", "Flagged:"] + [f"- {_escape_md(flag)}" for flag in table.flags]
    if table.notes:
        lines += ["", "Notes:"] + [f"- {_escape_md(note)}" for note in table.notes]
    return "\n".join(lines) + "\n"


def to_csv(table: GridTable) -> str:
    """One line per cell: its axis values, mean, spread, number of runs, the runs, the gap reason."""
    stream = io.StringIO()
    writer = csv.writer(stream)
    writer.writerow([*table.row_axes, *table.column_axes, "mean", "spread", "n", "runs", "gap"])
    for row, cells in zip(table.rows, table.cells):
        for column, cell in zip(table.columns, cells):
            writer.writerow([*row, *column, "" if cell.mean is None else repr(cell.mean),
                             "" if cell.spread is None else repr(cell.spread), len(cell.runs),
                             " ".join(str(p) for p in cell.runs), cell.gap or ""])
    return stream.getvalue()


def _latex(text: str) -> str:
    return re.sub(r"([&%$#_{}])", r"\\\1", text)


def to_latex(table: GridTable) -> str:
    gaps = table.gaps()
    width = max(len(table.row_axes), 1)
    header = [*(_latex(a) for a in table.row_axes)] or ["runs"]
    header += [_latex(" / ".join(_label(a, v) for a, v in zip(table.column_axes, c))) for c in table.columns]
    lines = [f"% {_latex(table.title)}", "\\begin{tabular}{" + "l" * width + "r" * len(table.columns) + "}",
             "\\hline", " & ".join(header) + " \\\\", "\\hline"]
    for row, cells in zip(table.rows, table.cells):
        texts = []
        for cell in cells:
            if cell.gap:
                texts.append(f"--$^{{{gaps[cell.gap]}}}$")
            elif cell.spread is None:
                texts.append(_text(cell, gaps, table.decimals))
            else:
                texts.append(f"${cell.mean:.{table.decimals}f} \\pm {cell.spread:.{table.decimals}f}$")
        lines.append(" & ".join([_latex(v) for v in row] or ["all"]) + " & " + " & ".join(texts) + " \\\\")
    lines += ["\\hline", "\\end{tabular}"] + [f"% ({i}) {_latex(reason)}" for reason, i in gaps.items()]
    lines += [f"% flagged: {_latex(flag)}" for flag in table.flags]
    return "\n".join(lines) + "\n"


GRID_FORMATS = {"md": to_markdown, "csv": to_csv, "latex": to_latex}


def wandb_rows(table: GridTable) -> tuple[list[str], list[list]]:
    """The table as W&B table columns and rows (numbers as numbers; a gap as None)."""
    columns = [*table.row_axes] or ["runs"]
    columns += [" / ".join(_label(a, v) for a, v in zip(table.column_axes, c)) for c in table.columns]
    rows = [[*row] + [cell.mean for cell in cells] for row, cells in zip(table.rows, table.cells)]
    return columns, rows
