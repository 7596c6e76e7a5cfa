"""Building a paper table from the run directories of its Hydra multirun, beside the published numbers.

A table (``robust_seg.reporting.paper_tables``) is run by one experiment config as a multirun whose jobs differ by
their sweep overrides: ``+experiment/<group>_rows=<row>`` (the model), ``+experiment/table_columns=<column>`` (the
attack variant), ``attack.options.loss=<loss>``, ``+experiment/thesis_scenarios=untargeted|targeted`` (thesis Tables
5.1 / 5.2) and ``model=zoo/<name>`` (the zoo leaderboards). Those overrides are a job's *coordinates*; a table cell
names the coordinates of the runs it reads and how it reads them (radius, component, metric), so cells are keyed by
configuration, never by job number.

A cell becomes a gap, with the reason, when no job with its coordinates exists (not launched or killed
before it started), when the job has no ``results.json`` (failed or killed; the last error line of its log
is quoted), when the results lack the entry the cell reads, or when two runs with the same coordinates
have different configurations (they are never mixed into one cell; runs with identical configurations,
e.g. a re-run, are the same cell and the newest one is read), or when a run's ``attack.target`` contradicts its
scenario (a targeted run without a target, or an untargeted one with a target).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import yaml

from robust_seg.names import WORST


ROWS_GROUP = re.compile(r"^\+?experiment/(\w+_rows)=(.+)$")
COLUMNS_OVERRIDE = "experiment/table_columns"
SCENARIO_OVERRIDE = "experiment/thesis_scenarios"
SCENARIOS = ("untargeted", "targeted")
LOSS_OVERRIDE = "attack.options.loss"
IGNORED_CONFIG_KEYS = ("resume", "run_name", "logger", "runtime")
ZOO_PREFIX = "zoo/"


@dataclass(frozen=True)
class Coordinates:
    """The sweep overrides that tell a table's runs apart (None where a table does not sweep that axis)."""

    row: str | None = None
    column: str | None = None
    loss: str | None = None
    scenario: str | None = None  # thesis Tables 5.1 / 5.2: untargeted or targeted

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in vars(self).items() if v is not None) or "the single run"


@dataclass
class Run:
    """One job directory of a multirun: its coordinates, configuration fingerprint and results (or why none)."""

    path: Path
    experiment: str | None
    coordinates: Coordinates
    fingerprint: str
    results: dict | None
    problem: str | None
    target: object = None  # the run's attack.target (None: untargeted, or a config without an attack)
    has_attack: bool = False
    overrides: tuple[str, ...] = ()  # as recorded (the user's form)
    config: dict = field(default_factory=dict)  # the composed config, without IGNORED_CONFIG_KEYS

    @classmethod
    def load(cls, path: Path) -> "Run":
        """A job's coordinates and configuration come from the provenance record of its ``results.json`` (written
        with the results, never rewritten); ``.hydra/`` serves only jobs without results (failed or killed)."""
        results_file = path / "results.json"
        results = json.loads(results_file.read_text()) if results_file.exists() else None
        record = (results or {}).get("provenance")
        if record:
            overrides, config = list(record["overrides"]), dict(record["config"])
        else:
            overrides = yaml.safe_load((path / ".hydra" / "overrides.yaml").read_text()) or []
            config = yaml.safe_load((path / ".hydra" / "config.yaml").read_text()) or {}
        for key in IGNORED_CONFIG_KEYS:
            config.pop(key, None)
        row = column = loss = scenario = experiment = None
        for override in overrides:
            key, _, value = override.partition("=")
            if ROWS_GROUP.match(override):
                row = value
            elif key.lstrip("+") == COLUMNS_OVERRIDE:
                column = value
            elif key.lstrip("+") == LOSS_OVERRIDE:
                loss = value
            elif key.lstrip("+") == SCENARIO_OVERRIDE:
                scenario = value
            elif key == "experiment":
                experiment = value
            elif key.lstrip("+") == "model" and value.startswith(ZOO_PREFIX):  # the zoo leaderboards' rows
                row = value[len(ZOO_PREFIX):]
        problem = None if results is not None else f"job {path.name} has no results.json ({_failure_hint(path)})"
        attack = config.get("attack") if isinstance(config.get("attack"), dict) else None
        return cls(path, experiment, Coordinates(row, column, loss, scenario), json.dumps(config, sort_keys=True),
                   results, problem, target=(attack or {}).get("target"), has_attack=attack is not None,
                   overrides=tuple(overrides), config=config)

    def scenario_problem(self) -> str | None:
        """Why this run's ``attack.target`` contradicts its recorded scenario (None when it does not)."""
        scenario = self.coordinates.scenario
        if scenario is None or not self.has_attack:
            return None
        if scenario == "targeted" and self.target is None:
            return f"job {self.path.name} is recorded as targeted but has no attack.target"
        if scenario == "untargeted" and self.target is not None:
            return f"job {self.path.name} is recorded as untargeted but has attack.target={self.target}"
        return None


def _failure_hint(path: Path) -> str:
    """The last error line of the job's log, else how far a killed job got."""
    for log in sorted(path.glob("*.log")):
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
        errors = [line for line in lines if "Error" in line or "error:" in line or "Traceback" in line]
        if errors:
            return f"failed: {errors[-1].split('] - ', 1)[-1]}"  # the whole line, without the log prefix
    batches = path / "batches.jsonl"
    done = sum(1 for line in batches.read_text().splitlines() if line.endswith("}")) if batches.exists() else 0
    if not done:
        return "failed or killed before its first batch; the multirun's console output has the error"
    return f"killed or still running after {done} batch(es)"


def collect_runs(directories: Iterable[str | Path]) -> list[Run]:
    """Every job directory (one holding ``.hydra/overrides.yaml``) under the given directories."""
    runs = []
    for directory in directories:
        directory = Path(directory)
        candidates = [directory] if (directory / ".hydra").is_dir() else sorted(
            p.parent.parent for p in directory.rglob(".hydra/overrides.yaml"))
        runs += [Run.load(path) for path in candidates]
    return runs


# ----------------------------------------------------------------------------------------------- cell readers
class MissingEntry(KeyError):
    """The results of a run lack what a cell reads (e.g. a radius the run did not evaluate)."""


def _entry(results: dict, radius: str, component: str) -> dict:
    try:
        return results["radii"][radius][component]
    except KeyError:
        raise MissingEntry(f"no {component} at radius {radius} in the results") from None


def metric(radius: str, name: str, component: str = WORST) -> Callable[[list[dict]], float]:
    """ACC or mIoU (``name`` 'acc' / 'miou') of one component of one run at one radius."""
    return lambda results: _entry(results[0], radius, component)[name]


def worst_case_acc(radius: str, components: Sequence[str]) -> Callable[[list[dict]], float]:
    """Mean over images of the lowest per-image ACC among ``components`` (of one run, or one per source run)."""
    def read(results: list[dict]) -> float:
        per_run = [_entry(results[0 if len(results) == 1 else i], radius, c)["per_image_acc"]
                   for i, c in enumerate(components)]
        if len({len(values) for values in per_run}) != 1:
            raise MissingEntry("the runs evaluated different numbers of images")
        worst = [min(values) for values in zip(*per_run) if None not in values]  # None: no labelled pixel
        return sum(worst) / len(worst)
    return read


def norm_statistic(name: str) -> Callable[[list[dict]], float]:
    """Median or mean minimal norm x 255 (thesis Table 5.1: a failed image counts as 255)."""
    def read(results: list[dict]) -> float:
        if "minimal_norm" not in results[0]:
            raise MissingEntry("not a minimal-norm run")
        return results[0]["minimal_norm"][f"{name}_x255"]
    return read


def calibration_error(results: list[dict]) -> float:
    """Dataset-level ECE (15 bins, in %) of the clean predictions, without temperature scaling."""
    try:
        entry = results[0]["calibration"]["radii"]["0"]
    except KeyError:
        raise MissingEntry("no calibration metrics at radius 0 (run with calibration=true)") from None
    return 100 * next(iter(entry.values()))["ece_dataset"]


# ----------------------------------------------------------------------------------------------- layout
@dataclass(frozen=True)
class CellSpec:
    sources: tuple[Coordinates, ...]
    read: Callable[[list[dict]], float]


@dataclass(frozen=True)
class RowSpec:
    labels: tuple[str, ...]
    cells: tuple[CellSpec | None, ...]
    published: tuple[float | None, ...] | None = None
    missing_reason: str | None = None  # why cells without a spec (None) have no run


@dataclass(frozen=True)
class TableSpec:
    name: str
    experiment: str
    title: str
    row_header: tuple[str, ...]
    columns: tuple[tuple[str, ...], ...]
    rows: tuple[RowSpec, ...]
    decimals: int = 1  # as the paper prints them (the thesis' norms: 2)

    def expected_coordinates(self) -> set[Coordinates]:
        return {s for row in self.rows for cell in row.cells if cell for s in cell.sources}


@dataclass
class CellResult:
    value: float | None = None
    published: float | None = None
    gap: str | None = None
    protocol: str | None = None  # the evaluation protocol of the runs the value was read from

    @property
    def difference(self) -> float | None:
        if self.value is None or self.published is None:
            return None
        return self.value - self.published


def run_protocol(results: dict) -> str:
    """The evaluation protocol a run recorded (``robust_seg.data.protocols``); runs from before protocols were
    recorded evaluated under ``pad``."""
    protocol = ((results.get("provenance") or {}).get("dataset") or {}).get("protocol")
    return protocol["name"] if protocol else "pad"


@dataclass
class BuiltTable:
    spec: TableSpec
    cells: list[list[CellResult]]
    notes: list[str] = field(default_factory=list)

    @property
    def row_labels(self) -> list[tuple[str, ...]]:
        return [row.labels for row in self.spec.rows]

    @property
    def column_labels(self) -> list[tuple[str, ...]]:
        return list(self.spec.columns)

    def gaps(self) -> list[str]:
        return [cell.gap for row in self.cells for cell in row if cell.gap]


def build_table(spec: TableSpec, runs: Sequence[Run]) -> BuiltTable:
    """Fill ``spec`` from ``runs`` (runs of other experiments are ignored and counted in the notes)."""
    mine = [run for run in runs if run.experiment == spec.experiment]
    notes = []
    if len(mine) < len(runs):
        notes.append(f"{len(runs) - len(mine)} run(s) of other experiments ignored")
    by_coordinates: dict[Coordinates, list[Run]] = {}
    for run in mine:
        by_coordinates.setdefault(run.coordinates, []).append(run)
    unexpected = set(by_coordinates) - spec.expected_coordinates()
    if unexpected:
        notes.append("runs outside the table's grid ignored: " + "; ".join(sorted(c.describe() for c in unexpected)))
    cells = []
    for row in spec.rows:
        row_cells = []
        for index, cell in enumerate(row.cells):
            paper = row.published[index] if row.published else None
            row_cells.append(_fill(cell, by_coordinates, paper, row.missing_reason))
        cells.append(row_cells)
    notes += protocol_notes(spec, cells)
    if any("+scale=embedded" in (run.results or {}).get("provenance", {}).get("overrides", []) for run in mine):
        notes.insert(0, "EMBEDDED SCALE (+scale=embedded): the shipped small model on 2 synthetic images with a few "
                        "iterations; these numbers check the pipeline, not the paper")
    random = sorted(run.path.name for run in mine if (run.results or {}).get("random_weights"))
    if random:
        notes.insert(0, f"RANDOM WEIGHTS: {len(random)} run(s) evaluated a model without trained weights "
                        f"(model.random_weights=true: {', '.join(random)}); their numbers say nothing about a trained "
                        "model")
    return BuiltTable(spec, cells, notes)


def protocol_notes(spec: TableSpec, cells: list[list[CellResult]]) -> list[str]:
    """The evaluation protocol of the table's numbers; a column whose cells come from runs of different
    protocols is named, with the rows of each, since its numbers are not comparable."""
    used = sorted({cell.protocol for row in cells for cell in row if cell.protocol})
    if not used:
        return []
    notes = [f"evaluation protocol: {', '.join(used)} (robust_seg/data/protocols.py)"]
    for index, column in enumerate(spec.columns):
        by_protocol: dict[str, list[str]] = {}
        for row, row_cells in zip(spec.rows, cells):
            if row_cells[index].protocol:
                by_protocol.setdefault(row_cells[index].protocol, []).append(" / ".join(row.labels))
        if len(by_protocol) > 1:
            notes.append(f"PROTOCOLS MIXED in column {' '.join(column)}: " + "; ".join(
                f"{name} ({', '.join(rows)})" for name, rows in sorted(by_protocol.items()))
                + ": these numbers are not comparable")
    return notes


def _fill(cell: CellSpec | None, by_coordinates: dict[Coordinates, list[Run]], paper: float | None,
          missing_reason: str | None) -> CellResult:
    if cell is None:
        return CellResult(published=paper, gap=missing_reason or "not part of the grid")
    results = []
    for source in cell.sources:
        candidates = by_coordinates.get(source, [])
        if not candidates:
            return CellResult(published=paper, gap=f"no run with {source.describe()} (not launched, or killed "
                                                   "before it started)")
        if len({run.fingerprint for run in candidates if run.results is not None}) > 1:
            return CellResult(published=paper, gap=f"{len(candidates)} runs with {source.describe()} have different "
                                                   "configs (" + ", ".join(str(r.path) for r in candidates) + ")")
        run = max(candidates, key=lambda r: (r.results is not None, r.path.stat().st_mtime))
        if run.results is None:
            return CellResult(published=paper, gap=run.problem)
        if run.scenario_problem():
            return CellResult(published=paper, gap=run.scenario_problem())
        results.append(run.results)
    try:
        value = float(cell.read(results))
    except MissingEntry as error:
        return CellResult(published=paper, gap=str(error.args[0]))
    protocols = sorted({run_protocol(r) for r in results})
    return CellResult(value=value, published=paper, protocol="+".join(protocols))


def acc_miou_cells(source: Coordinates, radius: str, component: str = WORST) -> tuple[CellSpec, ...]:
    return tuple(CellSpec((source,), metric(radius, name, component)) for name in ("acc", "miou"))
