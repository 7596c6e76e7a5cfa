"""The house's layering rules (docs/architecture.md), enforced on the code's own imports, lazy ones included.

A module may import modules of its own package and of the layers below its own; packages of one layer do not
import each other (only the entry points, the top layer, may). Every import is read from the source with ``ast``:
module-level imports and those inside functions alike, so a function-local import cannot hide a dependency.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "robust_seg"

LAYERS = (
    ("ground", ("__init__", "errors", "names", "compat")),
    ("config values", ("radii", "config_checks")),
    ("domain", ("metrics", "data", "models")),
    ("attacks", ("attacks",)),
    ("reporting", ("reporting",)),
    ("run plumbing", ("run",)),
    ("workflows", ("evaluation", "training")),
    ("entry points", ("api", "evaluate", "train", "pretrain", "merge", "table", "zoo")),
)
"""From the ground up: each unit (a top-level module or a package of ``robust_seg/``) and its layer."""
LAYER_OF = {unit: index for index, (_, units) in enumerate(LAYERS) for unit in units}
TOP = len(LAYERS) - 1

ALLOWED_EXCEPTIONS = {("__init__", "api"), ("__init__", "attacks")}
"""The package's face (``robust_seg/__init__.py``) hands on ``rs.load_model``, ``rs.evaluate`` and ``rs.attacks``
on first use (a lazy ``__getattr__``): the one import that runs up, named in docs/architecture.md."""

MAX_LINES = 400
MAX_TOP_LEVEL_MODULES = 12


def unit_of(module: str) -> str:
    """``robust_seg.evaluation.driver`` -> ``evaluation``; ``robust_seg.errors`` -> ``errors``; ``robust_seg`` ->
    ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, module) of every ``robust_seg`` import in ``source``, relative imports resolved, lazy ones included."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "robust_seg":  # from robust_seg import x: x may be a module
                found += [(node.lineno, f"robust_seg.{alias.name}") if (PACKAGE / alias.name).is_dir() or
                          (PACKAGE / f"{alias.name}.py").is_file() else (node.lineno, target) for alias in node.names]
            else:
                found.append((node.lineno, target))
    return [(line, name) for line, name in found if name == "robust_seg" or name.startswith("robust_seg.")]


def violations(module: str, source: str, is_package: bool = False) -> list[str]:
    """The imports of ``module`` (its ``source``) that break the layering rules, one line each."""
    unit = unit_of(module)
    layer = LAYER_OF[unit]
    problems = []
    for line, target in imported_modules(source, module, is_package):
        other = unit_of(target)
        if other == unit or (unit, other) in ALLOWED_EXCEPTIONS:
            continue
        if other not in LAYER_OF:
            problems.append(f"{module}:{line} imports {target}: {other} has no layer (add it to LAYERS and "
                            "docs/architecture.md)")
        elif LAYER_OF[other] > layer or (LAYER_OF[other] == layer and layer != TOP):
            problems.append(f"{module}:{line} imports {target}: {LAYERS[layer][0]} ({unit}) may not import "
                            f"{LAYERS[LAYER_OF[other]][0]} ({other})")
    return problems


def source_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_unit_of_the_package_has_a_layer():
    units = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.is_file() and p.suffix == ".py") or (p.is_dir() and (p / "__init__.py").is_file())}
    assert units == set(LAYER_OF), f"units without a layer: {units - set(LAYER_OF)}; layers without a unit: " \
                                   f"{set(LAYER_OF) - units}"


def test_no_import_runs_up_or_sideways():
    problems = [problem for path in source_files()
                for problem in violations(module_name(path), path.read_text(), path.name == "__init__.py")]
    assert not problems, "imports against the layering rules (docs/architecture.md):\n" + "\n".join(problems)


@pytest.mark.parametrize("module, source, expected", [
    ("robust_seg.metrics.segmentation", "def f():\n    from robust_seg.evaluation import driver\n",
     "domain (metrics) may not import workflows (evaluation)"),
    ("robust_seg.data.prepare", "from robust_seg.run.cli import run_job\n",
     "domain (data) may not import run plumbing (run)"),
    ("robust_seg.evaluation.driver", "import robust_seg.training.loop\n",
     "workflows (evaluation) may not import workflows (training)"),
    ("robust_seg.models.zoo", "from robust_seg.reporting.published import paper_numbers\n",
     "domain (models) may not import reporting (reporting)"),
    ("robust_seg.attacks.sea", "from ..evaluation.results import report\n",
     "attacks (attacks) may not import workflows (evaluation)"),
    ("robust_seg.errors", "from robust_seg import zoo\n", "ground (errors) may not import entry points (zoo)"),
])
def test_a_forbidden_import_is_caught_lazy_or_relative(module, source, expected):
    found = violations(module, source)
    assert len(found) == 1 and expected in found[0], found


def test_allowed_imports_pass():
    assert not violations("robust_seg.evaluation.driver", "from robust_seg.attacks.sea import sea\n"
                          "from robust_seg.run.directory import RunDirectory\nfrom .results import report\n")
    assert not violations("robust_seg.evaluate", "from robust_seg.api import evaluate\n")  # entry points: one layer


def test_module_sizes_and_the_top_level():
    long = [f"{p.relative_to(ROOT)}: {n}" for p in source_files() if (n := len(p.read_text().splitlines())) > MAX_LINES]
    assert not long, f"modules over {MAX_LINES} lines: {long}"
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, f"{len(top)} modules directly in robust_seg/: {top}"
