"""Record or check the numbers of a fixed set of tiny runs: every attack kind, the main job, AT, CALS, PIR-AT.

    python scripts/regression_runs.py --record      # write tests/regression/expected-<CPU kernels>.json
    python scripts/regression_runs.py               # run them again and compare, number for number

The numbers are exact for one set of CPU kernels: torch picks its vectorised kernels (and oneDNN its
convolutions) by the processor's instruction set, and AVX2 and AVX-512 kernels differ in the last bits, which
some iterations of an attack turn into different pixels. So each instruction set has its own file, named by
``torch.backends.cpu.get_cpu_capability()``; a machine with no file of its own records one from a commit whose
numbers are trusted (``--record`` on that commit), and from then on every change is checked against it.

Each run is the entry point's own command (in this process, one thread, in a temporary directory): the main job
at 2 images, each attack at 2 images and 3 iterations (Square: 3 queries), a calibration evaluation, and one epoch
of AT, CALS-ALM and PIR-AT on 16 synthetic images. What is compared are the numbers of ``results.json`` /
``train_results.json``: every number in them except times, paths and the provenance record. A redesign of the code
must leave them identical (``tests/test_regression.py``).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def expected_file() -> Path:
    """The recorded numbers of this machine's CPU kernels (``tests/regression/expected-<capability>.json``)."""
    import torch

    return ROOT / "tests" / "regression" / f"expected-{torch.backends.cpu.get_cpu_capability()}.json"


EXPECTED = expected_file()

EVALUATE = ["logger=none", "max_images=2", "batch_size=2", "dataset.synthetic.num_val=2", "runtime.threads=1",
            "figure_images=0", "diagnostics=false"]
THREE = ["++attack.options.iterations=3"]
TRAIN = ["logger=none", "dataset.synthetic.num_train=16", "dataset.synthetic.num_val=4", "batch_size=8",
         "schedule.epochs=1", "schedule.warmup_epochs=0", "robust_eval.max_images=2", "robust_eval.iterations=2",
         "runtime.threads=1", "model=small_upernet_convnext", "scheme.adversarial.steps=2"]
RUNS: dict[str, tuple[str, list[str]]] = {
    "main_job": ("evaluate", ["experiment=embedded_default", *EVALUATE, "diagnostics=true"]),
    **{attack: ("evaluate", [f"attack={attack}", *EVALUATE, *THREE])
       for attack in ("sea", "sea_six_losses", "apgd", "apgd_segpgd", "apgd_cospgd", "pgd", "segpgd", "cospgd",
                      "alma_prox", "dag", "fmn", "pdpgd", "ifgsm_bs", "mifgsm_bs", "pgd_ce_bs", "pgd_dlr_bs")},
    "square": ("evaluate", ["attack=square", *EVALUATE, "++attack.options.queries=3"]),
    "sea_square": ("evaluate", ["attack=sea_square", *EVALUATE, *THREE, "++attack.options.queries=3"]),
    "calibration": ("evaluate", ["attack=none", "calibration=true", *EVALUATE]),
    "train_at": ("train", ["scheme=at", *TRAIN]),
    "train_cals_alm": ("train", ["scheme=at", "scheme/loss=cals_alm", *TRAIN]),
    "train_pirat": ("train", ["scheme=at", *TRAIN, "model.backbone_init=robust", "model.backbone_format=mmseg",
                              "+model.backbone_checkpoints.robust=BACKBONE"]),
}
UNSTABLE = ("second", "time", "provenance", "run_directory", "report", "history_seconds", "cost")
"""Keys whose values are not results (wall times, paths, the provenance record, rendered text)."""


def numbers(value, path: str = "") -> dict[str, float | int | bool | None]:
    """Every number (and null) below ``value``, keyed by its path, without the UNSTABLE keys."""
    if isinstance(value, dict):
        found = {}
        for key, item in value.items():
            if not any(part in str(key) for part in UNSTABLE):
                found.update(numbers(item, f"{path}.{key}" if path else str(key)))
        return found
    if isinstance(value, list):
        found = {}
        for index, item in enumerate(value):
            found.update(numbers(item, f"{path}[{index}]"))
        return found
    if value is None or isinstance(value, (bool, int, float)):
        return {path: value}
    return {}


def _backbone(directory: Path) -> Path:
    """The shipped model's backbone as a whole-segmentor file (``backbone.*`` keys), PIR-AT's "robust" init."""
    import torch

    state = torch.load(ROOT / "robust_seg" / "assets" / "small_upernet_convnext_synthetic.pt", weights_only=True)
    state = state.get("state_dict", state)
    path = directory / "backbone.pt"
    torch.save({k[len("segmentor."):]: v for k, v in state.items() if k.startswith("segmentor.backbone.")}, path)
    return path


def run_one(name: str, directory: Path) -> dict:
    """Run ``name`` in ``directory``; its numbers."""
    import importlib

    import torch

    module, overrides = RUNS[name]
    if any("BACKBONE" in o for o in overrides):  # PIR-AT's run only: the backbone file is written once
        backbone = str(_backbone(directory))
        overrides = [o.replace("BACKBONE", backbone) for o in overrides]
    entry = importlib.import_module(f"robust_seg.{module}")
    argv, threads, cwd = sys.argv, torch.get_num_threads(), os.getcwd()
    sys.argv = [f"robust_seg.{module}", *overrides, f"run_name={name}"]
    output = io.StringIO()
    try:
        os.chdir(directory)
        with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
            try:
                entry.main()
            except SystemExit as stop:
                if stop.code:
                    raise RuntimeError(f"{name} failed:\n{output.getvalue()[-3000:]}") from None
    finally:
        sys.argv = argv
        os.chdir(cwd)
        torch.set_num_threads(threads)
    result = directory / "outputs" / module / name / ("results.json" if module == "evaluate" else "train_results.json")
    return numbers(json.loads(result.read_text()))


def run_all(names: list[str]) -> dict[str, dict]:
    os.environ.setdefault("WANDB_MODE", "disabled")
    with tempfile.TemporaryDirectory(prefix="regression-") as temporary:
        return {name: run_one(name, Path(temporary)) for name in names}


def differences(expected: dict[str, dict], actual: dict[str, dict]) -> list[str]:
    """One line per run whose numbers differ from the recorded ones (missing, extra or changed keys)."""
    lines = []
    for name in expected:
        old, new = expected[name], actual.get(name, {})
        changed = sorted(k for k in old.keys() & new.keys() if old[k] != new[k])
        missing, extra = sorted(old.keys() - new.keys()), sorted(new.keys() - old.keys())
        if changed or missing or extra:
            detail = [f"{k}: {old[k]!r} -> {new[k]!r}" for k in changed[:3]] + [f"missing {k}" for k in missing[:3]] \
                + [f"new {k}" for k in extra[:3]]
            lines.append(f"{name}: {len(changed)} changed, {len(missing)} missing, {len(extra)} new ({'; '.join(detail)})")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help=f"write {EXPECTED.relative_to(ROOT)} (this machine's kernels)")
    parser.add_argument("--only", nargs="+", choices=sorted(RUNS), help="these runs only")
    args = parser.parse_args(argv)
    names = args.only or list(RUNS)
    actual = run_all(names)
    if args.record:
        recorded = json.loads(EXPECTED.read_text()) if EXPECTED.exists() and args.only else {}
        EXPECTED.parent.mkdir(parents=True, exist_ok=True)
        EXPECTED.write_text(json.dumps({**recorded, **actual}, indent=1, sort_keys=True) + "\n")
        print(f"recorded {len(actual)} runs, {sum(map(len, actual.values()))} numbers in {EXPECTED}")
        return 0
    expected = json.loads(EXPECTED.read_text())
    problems = differences({n: expected[n] for n in names}, actual)
    print("\n".join(problems) or f"{len(names)} runs: every number as recorded")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
