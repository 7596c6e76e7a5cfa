"""The paper tables, built from the run directories of their Hydra multiruns, beside the published numbers.

Each table of ``TABLES`` is run by one experiment config (``configs/experiment/<experiment>.yaml``) as a
multirun whose jobs differ by their sweep overrides: ``+experiment/<group>_rows=<row>`` (the model),
``+experiment/table_columns=<column>`` (the attack variant), ``attack.options.loss=<loss>`` and, for the thesis'
Tables 5.1 / 5.2, ``+experiment/thesis_scenarios=untargeted|targeted``. Those overrides are a job's *coordinates*; a table cell names the coordinates of the runs it reads and how it
reads them (radius, component, metric), so cells are keyed by configuration, never by job number.

A cell becomes a gap, with the reason, when no job with its coordinates exists (not launched or killed
before it started), when the job has no ``results.json`` (failed or killed; the last error line of its log
is quoted), when the results lack the entry the cell reads, or when two runs with the same coordinates
have different configurations (they are never mixed into one cell; runs with identical configurations,
e.g. a re-run, are the same cell and the newest one is read), or when a run's ``attack.target`` contradicts its
scenario (a targeted run without a target, or an untargeted one with a target).

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

import csv
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import yaml

from robust_seg.names import ALL_LOSSES, SEA_LOSSES, loss_label
from robust_seg.reporting import published

ROWS_GROUP = re.compile(r"^\+?experiment/(\w+_rows)=(.+)$")
COLUMNS_OVERRIDE = "experiment/table_columns"
SCENARIO_OVERRIDE = "experiment/thesis_scenarios"
SCENARIOS = ("untargeted", "targeted")
LOSS_OVERRIDE = "attack.options.loss"
IGNORED_CONFIG_KEYS = ("resume", "run_name", "logger", "runtime")
WORST = "worst_case"
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
                   results, problem, target=(attack or {}).get("target"), has_attack=attack is not None)

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

    @property
    def difference(self) -> float | None:
        if self.value is None or self.published is None:
            return None
        return self.value - self.published


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
    if any("+scale=embedded" in (run.results or {}).get("provenance", {}).get("overrides", []) for run in mine):
        notes.insert(0, "EMBEDDED SCALE (+scale=embedded): the shipped small model on 2 synthetic images with a few "
                        "iterations; these numbers check the pipeline, not the paper")
    random = sorted(run.path.name for run in mine if (run.results or {}).get("random_weights"))
    if random:
        notes.insert(0, f"RANDOM WEIGHTS: {len(random)} run(s) evaluated a model without trained weights "
                        f"(model.random_weights=true: {', '.join(random)}); their numbers say nothing about a trained "
                        "model")
    return BuiltTable(spec, cells, notes)


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
    return CellResult(value=value, published=paper)


# ----------------------------------------------------------------------------------------------- the tables
ACC_MIOU = ("Acc", "mIoU")
TABLE3_ROWS = (  # (row config, dataset section, training, init, steps, architecture)
    ("voc_pspnet_r50_ddcat", "PASCAL-VOC: 50 epochs", "DDC-AT (Xu et al., 2021)", "clean", "3", "PSPNet + RN-50"),
    ("voc_pspnet_r50_at_xu", "PASCAL-VOC: 50 epochs", "AT (Xu et al., 2021)", "clean", "3", "PSPNet + RN-50"),
    ("voc_pspnet_r50_segpgd_at", "PASCAL-VOC: 50 epochs", "SegPGD-AT (Gu et al., 2022)", "clean", "7",
     "PSPNet + RN-50"),
    ("voc_pspnet_r50_pirat_5step_50ep", "PASCAL-VOC: 50 epochs", "PIR-AT (ours)", "robust", "5", "PSPNet + RN-50"),
    ("voc_upernet_convnext_t_at_5step_50ep", "PASCAL-VOC: 50 epochs", "AT (ours)", "clean", "5", "UPerNet + CN-T"),
    ("voc_upernet_convnext_t_pirat_5step_50ep", "PASCAL-VOC: 50 epochs", "PIR-AT (ours)", "robust", "5",
     "UPerNet + CN-T"),
    ("voc_upernet_convnext_s_at_5step_50ep", "PASCAL-VOC: 50 epochs", "AT (ours)", "clean", "5", "UPerNet + CN-S"),
    ("voc_upernet_convnext_s_pirat_5step_50ep", "PASCAL-VOC: 50 epochs", "PIR-AT (ours)", "robust", "5",
     "UPerNet + CN-S"),
    ("ade_upernet_convnext_t_at_5step_128ep", "ADE20K: 128 epochs", "AT (ours)", "clean", "5", "UPerNet + CN-T"),
    ("ade_upernet_convnext_t_pirat_5step_128ep", "ADE20K: 128 epochs", "PIR-AT (ours)", "robust", "5",
     "UPerNet + CN-T"),
    ("ade_segmenter_vit_s_at_5step_128ep", "ADE20K: 128 epochs", "AT (ours)", "clean", "5", "Segmenter + ViT-S"),
    ("ade_segmenter_vit_s_pirat_5step_128ep", "ADE20K: 128 epochs", "PIR-AT (ours)", "robust", "5",
     "Segmenter + ViT-S"),
)
TABLE4_ROWS = (  # (row config, section, scheme, init, steps, epochs)
    ("voc_upernet_convnext_t_at_2step_50ep", "PASCAL-VOC, UPerNet with ConvNeXt-T backbone", "AT (ours)", "clean",
     "2", "50"),
    ("voc_upernet_convnext_t_pirat_2step_50ep", "PASCAL-VOC, UPerNet with ConvNeXt-T backbone", "PIR-AT (ours)",
     "robust", "2", "50"),
    ("voc_upernet_convnext_t_at_2step_300ep", "PASCAL-VOC, UPerNet with ConvNeXt-T backbone", "AT (ours)", "clean",
     "2", "300"),
    ("voc_upernet_convnext_t_at_5step_50ep", "PASCAL-VOC, UPerNet with ConvNeXt-T backbone", "AT (ours)", "clean",
     "5", "50"),
    ("voc_upernet_convnext_t_pirat_5step_50ep", "PASCAL-VOC, UPerNet with ConvNeXt-T backbone", "PIR-AT (ours)",
     "robust", "5", "50"),
    ("voc_upernet_convnext_t_at_5step_300ep", "PASCAL-VOC, UPerNet with ConvNeXt-T backbone", "AT (ours)", "clean",
     "5", "300"),
    ("ade_upernet_convnext_t_at_2step_128ep", "ADE20K, UPerNet with ConvNeXt-T backbone", "AT (ours)", "clean",
     "2", "128"),
    ("ade_upernet_convnext_t_pirat_2step_128ep", "ADE20K, UPerNet with ConvNeXt-T backbone", "PIR-AT (ours)",
     "robust", "2", "128"),
    ("ade_upernet_convnext_t_pirat_5step_32ep", "ADE20K, UPerNet with ConvNeXt-T backbone", "PIR-AT (ours)",
     "robust", "5", "32"),
    ("ade_upernet_convnext_t_at_5step_128ep", "ADE20K, UPerNet with ConvNeXt-T backbone", "AT (ours)", "clean",
     "5", "128"),
    ("ade_upernet_convnext_t_pirat_5step_128ep", "ADE20K, UPerNet with ConvNeXt-T backbone", "PIR-AT (ours)",
     "robust", "5", "128"),
    ("ade_segmenter_vit_s_pirat_5step_32ep", "ADE20K, Segmenter with ViT-S backbone", "PIR-AT (ours)", "robust",
     "5", "32"),
    ("ade_segmenter_vit_s_at_5step_128ep", "ADE20K, Segmenter with ViT-S backbone", "AT (ours)", "clean", "5",
     "128"),
    ("ade_segmenter_vit_s_pirat_5step_128ep", "ADE20K, Segmenter with ViT-S backbone", "PIR-AT (ours)", "robust",
     "5", "128"),
)
SEA_RADII = ("0", "4/255", "8/255", "12/255")
NO_PUBLIC_MODEL = {"voc_pspnet_r50_segpgd_at": "published only: SegPGD-AT models are not available (Gu et al., 2022)"}


def acc_miou_cells(source: Coordinates, radius: str, component: str = WORST) -> tuple[CellSpec, ...]:
    return tuple(CellSpec((source,), metric(radius, name, component)) for name in ("acc", "miou"))


def _sea_models_table(name: str, experiment: str, title: str, rows, header, numbers) -> TableSpec:
    """Tables 3 and 4: one SEA run per trained model, ACC and mIoU at 0, 4/255, 8/255, 12/255."""
    specs = []
    for config, *labels in rows:
        reason = NO_PUBLIC_MODEL.get(config)
        cells = (None,) * 8 if reason else tuple(
            c for radius in SEA_RADII for c in acc_miou_cells(Coordinates(row=config), radius))
        specs.append(RowSpec(tuple(labels), cells, numbers.get(config), reason))
    columns = tuple((radius, m) for radius in SEA_RADII for m in ACC_MIOU)
    return TableSpec(name, experiment, title, header, columns, tuple(specs))


def _table1() -> TableSpec:
    attacks = (("cospgd_300", "CosPGD (300 iter.)"), ("segpgd_300", "SegPGD (300 iter.)"),
               ("mask_ce_300", "Mask-CE (300 iter.)"), ("sea", "SEA (4 x 300 iter.)"))
    models = (("voc_pspnet_r50_ddcat", "DDC-AT", ("2/255", "4/255", "8/255")),
              ("voc_upernet_convnext_t_pirat_5step_50ep", "PIR-AT (ours)", ("4/255", "8/255", "12/255")))
    rows = tuple(RowSpec((label, radius), tuple(c for column, _ in attacks for c in acc_miou_cells(
        Coordinates(row=config, column=column), radius)), published.TABLE1[(label, radius)])
        for config, label, radii in models for radius in radii)
    return TableSpec("table1", "table1_sea_vs_baselines", "SEA paper Table 1: SOTA attacks vs SEA (PASCAL-VOC)",
                     ("model", "eps"), tuple((label, m) for _, label in attacks for m in ACC_MIOU), rows)


CLEAN_AND_ROBUST = (("voc_upernet_convnext_t_clean", "clean", ("0.25/255", "0.5/255", "1/255", "2/255")),
                    ("voc_upernet_convnext_t_pirat_5step_50ep", "PIR-AT", ("4/255", "8/255", "12/255", "16/255")))


def _table2() -> TableSpec:
    losses = (*ALL_LOSSES, WORST)
    rows = tuple(RowSpec((label, radius), tuple(c for loss in losses for c in acc_miou_cells(
        Coordinates(row=config, column="six_losses_100"), radius, loss)), published.TABLE2[(label, radius)])
        for config, label, radii in CLEAN_AND_ROBUST for radius in radii)
    columns = tuple((loss_label(loss) if loss != WORST else "worst case over losses", m)
                    for loss in losses for m in ACC_MIOU)
    return TableSpec("table2", "table2_losses", "SEA paper Table 2: APGD (100 iter.) on each loss, PASCAL-VOC",
                     ("model", "eps"), columns, rows)


def _table7() -> TableSpec:
    attacks = (("segpgd_100", "SegPGD"), ("segapgd_100", "SegAPGD"), ("cospgd_100", "CosPGD"),
               ("cosapgd_100", "CosAPGD"))
    rows = tuple(RowSpec((radius,), tuple(c for column, _ in attacks for c in acc_miou_cells(
        Coordinates(column=column), radius)), published.TABLE7[radius])
        for radius in ("4/255", "8/255", "12/255", "16/255"))
    return TableSpec("table7", "table7_apgd_vs_pgd", "SEA paper Table 7: PGD vs APGD on the SegPGD / CosPGD losses",
                     ("eps",), tuple((label, m) for _, label in attacks for m in ("ACC", "mIoU")), rows)


def _table8() -> TableSpec:
    subsets = (("six_losses_100", "all losses"), ("four_losses_100", "four losses"))
    rows = tuple(RowSpec((label, subset), tuple(c for radius in radii for c in acc_miou_cells(
        Coordinates(row=config, column=column), radius)), published.TABLE8[(label, subset)])
        for config, label, radii in CLEAN_AND_ROBUST for column, subset in subsets)
    columns = tuple((f"eps #{i + 1} ({clean} / {robust})", m) for i, (clean, robust) in enumerate(
        zip(CLEAN_AND_ROBUST[0][2], CLEAN_AND_ROBUST[1][2])) for m in ACC_MIOU)
    return TableSpec("table8", "table8_loss_selection", "SEA paper Table 8: worst case over six vs four losses",
                     ("model", "subset"), columns, rows)


def _table9() -> TableSpec:
    subsets = {"A": ("mask_ce", "bal_ce", "js"), "B": ("mask_ce", "bal_ce", "mask_sph"),
               "C": ("mask_ce", "js", "mask_sph")}
    models = (("voc_upernet_convnext_t_pirat_5step_50ep", "UPerNet ConvNeXt-T, PIR-AT, 50 epochs, PASCAL-VOC",
               ("4/255", "8/255", "12/255", "16/255")),
              ("ade_upernet_convnext_t_pirat_5step_128ep", "UPerNet ConvNeXt-T, PIR-AT, 128 epochs, ADE20K",
               ("4/255", "8/255", "12/255")),
              ("ade_upernet_convnext_s_pirat_5step_128ep", "UPerNet ConvNeXt-S, PIR-AT, 128 epochs, ADE20K",
               ("4/255", "8/255", "12/255")),
              ("ade_segmenter_vit_s_pirat_5step_128ep", "Segmenter ViT-S, PIR-AT, 128 epochs, ADE20K",
               ("4/255", "8/255", "12/255")))
    rows = []
    for config, label, radii in models:
        for radius in radii:
            source = (Coordinates(row=config, column="sea_components"),)
            cells = tuple(CellSpec(source, metric(radius, "acc", loss)) for loss in SEA_LOSSES) + tuple(
                CellSpec(source, worst_case_acc(radius, losses)) for losses in subsets.values()) + (
                CellSpec(source, metric(radius, "acc")),)
            rows.append(RowSpec((label, radius), cells, published.TABLE9[(config, radius)]))
    columns = tuple(("individual losses", loss_label(loss)) for loss in SEA_LOSSES) + tuple(
        ("subsets of three losses", f"{name}: " + " + ".join(loss_label(l) for l in losses))
        for name, losses in subsets.items()) + (("all (SEA)", "SEA"),)
    return TableSpec("table9", "table9_sea_components", "SEA paper Table 9: ACC of SEA's components and subsets",
                     ("model", "eps"), columns, tuple(rows))


def _figure2() -> TableSpec:
    schemes = (("const_300", "const-eps, 300 iter."), ("const_3x100", "const-eps, 3 x 100 iter."),
               ("red_300", "red-eps, 300 iter."))
    rows = []
    for radius in ("8/255", "12/255"):
        for column, label in schemes:
            sources = tuple(Coordinates(column=column, loss=loss) for loss in SEA_LOSSES)
            cells = tuple(c for source in sources for c in acc_miou_cells(source, radius)) + (
                CellSpec(sources, worst_case_acc(radius, (WORST,) * len(SEA_LOSSES))),)
            rows.append(RowSpec((radius, label), cells))
    columns = tuple((loss_label(loss), m) for loss in SEA_LOSSES for m in ("ACC", "mIoU")) + (
        ("worst case over losses", "ACC"),)
    return TableSpec("figure2", "figure2_radius_schedules",
                     "SEA paper Figure 2 (ACC) and Figure 3 (mIoU): const-eps vs red-eps APGD, PIR-AT on PASCAL-VOC",
                     ("eps", "scheme"), columns, tuple(rows))


MINIMAL_NORM_ATTACKS = (("ifgsm_13x20", "I-FGSM 13x20"), ("mifgsm_13x20", "MI-FGSM 13x20"),
                        ("pgd_ce_13x40", "PGD CE 13x40"), ("pgd_ce_13x4x10", "PGD CE 13x4x10"),
                        ("pgd_dlr_13x40", "PGD DLR 13x40"), ("pgd_dlr_13x4x10", "PGD DLR 13x4x10"),
                        ("dag_0003", "DAG eta = 0.003"), ("dag_0001", "DAG eta = 0.001"), ("fmn", "FMN Linf"),
                        ("pdpgd", "PDPGD Linf"), ("alma_prox", "ALMA prox"))


def _minimal_norm_table(name: str, experiment: str, title: str, models, attacks, numbers) -> TableSpec:
    """Thesis Tables 5.1 / 5.2: median and mean ||delta||_inf x 255 per scenario and attack (rows) and model
    (columns); each cell reads the run of its model, attack and scenario (``+experiment/thesis_scenarios``)."""
    rows = []
    for scenario in SCENARIOS:
        for column, label in attacks:
            cells = tuple(CellSpec((Coordinates(row=config, column=column, scenario=scenario),),
                                   norm_statistic(statistic))
                          for config, _ in models for statistic in ("median", "mean"))
            rows.append(RowSpec((scenario, label), cells, numbers[(scenario, column)]))
    columns = tuple((model, statistic) for _, model in models for statistic in ("median", "mean"))
    return TableSpec(name, experiment, title, ("scenario", "attack"), columns, tuple(rows), decimals=2)


def _thesis_table6_2() -> TableSpec:
    losses = (("ce", "CE"), ("ecp", "ECP"), ("ls", "LS"), ("fl", "FL"), ("mbls", "MbLS"), ("cals_alm", "CALS"))
    readers = {"ECE": calibration_error, "mIoU": metric("0", "miou")}
    rows = tuple(RowSpec((row,), tuple(CellSpec((Coordinates(row=config),), read) for config, _ in losses),
                         published.THESIS_TABLE6_2[row]) for row, read in readers.items())
    return TableSpec("thesis_6.2", "thesis_table6_2_cals_voc", "Thesis Table 6.2: segmentation results on PASCAL VOC 2012",
                     ("metric",), tuple((label,) for _, label in losses), rows, decimals=2)


def _all_tables() -> dict[str, TableSpec]:
    tables = [
        _table1(), _table2(),
        _sea_models_table("table3", "table3_robust_models", "SEA paper Table 3: robust models evaluated with SEA",
                          TABLE3_ROWS, ("dataset", "training", "init.", "steps", "architecture"), published.TABLE3),
        _sea_models_table("table4", "table4_at_vs_pirat", "SEA paper Table 4: AT vs PIR-AT", TABLE4_ROWS,
                          ("setting", "training scheme", "init.", "steps", "ep."), published.TABLE4),
        _table7(), _table8(), _table9(), _figure2(),
        _minimal_norm_table("thesis_5.1", "thesis_table5_1_minimal_norm",
                            "Thesis Table 5.1: median / mean ||delta||_inf x 255 of minimal-norm attacks",
                            (("voc_deeplabv3plus_r50", "Pascal VOC 2012, DeepLabV3+ ResNet-50"),
                             ("voc_fcn_hrnetv2_w48", "Pascal VOC 2012, FCN HRNetV2 W48"),
                             ("cityscapes_deeplabv3plus_r50", "Cityscapes, DeepLabV3+ ResNet-50"),
                             ("cityscapes_segformer_mit_b3", "Cityscapes, SegFormer MiT-B3")),
                            MINIMAL_NORM_ATTACKS, published.THESIS_TABLE5_1),
        _minimal_norm_table("thesis_5.2", "thesis_table5_2_minimal_norm_ddcat",
                            "Thesis Table 5.2: median / mean ||delta||_inf x 255 on DeepLabV3 DDC-AT",
                            (("voc_deeplabv3_r50_ddcat", "Pascal VOC 2012"),
                             ("cityscapes_deeplabv3_r50_ddcat", "Cityscapes")),
                            MINIMAL_NORM_ATTACKS[6:], published.THESIS_TABLE5_2),
        _thesis_table6_2(),
    ]
    return {spec.name: spec for spec in tables}


TABLES: dict[str, TableSpec] = _all_tables()


def table_spec(name: str) -> TableSpec:
    """A table by its short name (``table1``, ``thesis_5.1``, ...) or its experiment config's name."""
    for spec in TABLES.values():
        if name in (spec.name, spec.experiment):
            return spec
    known = ", ".join(f"{s.name} ({s.experiment})" for s in TABLES.values())
    raise KeyError(f"unknown table '{name}'; known: {known}")


# ----------------------------------------------------------------------------------------------- rendering
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


def make_table(name: str, directories: Iterable[str | Path], fmt: str = "md") -> str:
    """The table ``name`` built from the runs under ``directories``, rendered as ``fmt`` (md, csv, latex)."""
    return FORMATS[fmt](build_table(table_spec(name), collect_runs(directories)))
