"""Common corruptions as an evaluation mode (Hendrycks & Dietterich 2019; for segmentation Kamann & Rother 2020):
``attack=corruptions`` evaluates the model on every chosen corruption at every severity, through the same driver as
the attacks (resume, shards, merge, provenance, W&B). The corruptions are the ``imagecorruptions`` package's
(``robust_seg.compat.corruptions``); image i is corrupted from (``attack.seed``, its dataset index, the corruption,
the severity) alone, so that a run, its shards and a resumed run see the same corrupted images.

Each (corruption, severity) is one run of the evaluation under the results key ``<corruption>/<severity>``
(severity 0: the image itself); ``corruption_summary`` adds the means and, against a reference run, the corruption
errors: CE_c = sum_s E_{s,c} / sum_s E^ref_{s,c} with E = 100 - ACC (and the same with 100 - mIoU), mCE their mean
over the corruptions (Hendrycks & Dietterich 2019, Sec. 3, with the reference model in AlexNet's role).
"""
from __future__ import annotations

import time

import torch

from robust_seg.attacks.clean import clean
from robust_seg.attacks.result import AttackResult
from robust_seg.compat.corruptions import COMMON, EXTRA, SEVERITIES, corrupt


def corruption_key(name: str, severity: int) -> str:
    return f"{name}/{severity}"


def corruption_runs(corruptions, severities) -> list[tuple[tuple[str, int], str]]:
    """((corruption, severity), results key) of every run, corruption by corruption."""
    return [((name, int(severity)), corruption_key(name, int(severity))) for name in corruptions
            for severity in severities]


def chosen(options: dict) -> tuple[list[str], list[int]]:
    """The corruptions and severities of ``attack.options`` (defaults: the 15 common ones, severities 1-5)."""
    return list(options.get("corruptions", COMMON)), [int(s) for s in options.get("severities", SEVERITIES)]


def corruptions(model, images: torch.Tensor, labels: torch.Tensor, *, corruptions: list = list(COMMON),
                severities: list = list(SEVERITIES), reference: str | None = None,
                image_seeds: list[int] | None = None) -> dict[str, AttackResult]:
    """The model on ``images`` under every corruption and severity: results key -> ``AttackResult`` (the corrupted
    images, predictions, ACC in %; extras['seconds']: each image's corruption time). ``image_seeds``: one seed
    per image (default 0..B-1); ``reference`` only names the reference run of the summary."""
    return {key: corrupted(model, images, labels, corruption=name, severity=severity, image_seeds=image_seeds)
            for (name, severity), key in corruption_runs(corruptions, severities)}


def corrupted(model, images: torch.Tensor, labels: torch.Tensor, *, corruption: str, severity: int,
              image_seeds: list[int] | None = None) -> AttackResult:
    """One corruption at one severity: each image corrupted from its own seed, then one forward."""
    seeds = image_seeds if image_seeds is not None else list(range(images.shape[0]))
    outputs, seconds = [], []
    for image, seed in zip(images, seeds):
        started = time.perf_counter()
        outputs.append(corrupt(image.cpu(), corruption, severity, seed=int(seed)))
        seconds.append(time.perf_counter() - started)
    corrupted_images = torch.stack(outputs).to(images.device, images.dtype)
    result = clean(model, corrupted_images, labels)
    return AttackResult(corrupted_images, result.predictions, result.accuracy,
                        {"seconds": torch.tensor(seconds, dtype=torch.float64)})


def check_corruption_options(options: dict) -> None:
    from robust_seg.errors import ConfigError

    names = list(options.get("corruptions", COMMON))  # before chosen(): a severity may not be an integer yet
    unknown = [name for name in names if name not in COMMON + EXTRA]
    if unknown or not names:
        raise ConfigError(f"attack.options.corruptions: unknown {', '.join(map(str, unknown)) or '(empty list)'} "
                          f"(choose from {', '.join(COMMON + EXTRA)})")
    severities = list(options.get("severities", SEVERITIES))
    if not severities or any(isinstance(s, bool) or s not in (0, *SEVERITIES) for s in severities):
        raise ConfigError(f"attack.options.severities: {severities} must be a list of integers 0-5 (0: no "
                          "corruption)")
    if len(set(names)) != len(names) or len(set(severities)) != len(severities):
        raise ConfigError("attack.options.corruptions / severities: a value is listed twice")
    if options.get("reference"):
        load_reference(options["reference"])


def load_reference(path: str) -> dict:
    """The per-corruption table of a finished corruption run (its run directory or ``results.json``), the
    reference of the corruption errors."""
    import json
    from pathlib import Path

    from robust_seg.errors import ConfigError

    file = Path(path) / "results.json" if Path(path).is_dir() else Path(path)
    try:
        table = json.loads(file.read_text())["corruptions"]["table"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(f"attack.options.reference={path}: not a finished corruption run (no results.json with "
                          "a corruptions table); give the run directory of an attack=corruptions evaluation") from None
    return {"source": str(file), "table": table}


def corruption_summary(entries: dict[str, dict], corruptions, severities, reference: dict | None = None) -> dict:
    """Per corruption and severity the worst-case ACC and mIoU (``entries``: results key -> {acc, miou}), their
    mean over severities per corruption and over everything; with ``reference`` (another corruption run's summary)
    the corruption errors CE_c and mCE (in %, on ACC errors and on mIoU errors)."""
    table = {name: {str(s): {metric: entries[corruption_key(name, s)][metric] for metric in ("acc", "miou")}
                    for s in severities} for name in corruptions}  # severities as strings, as in results.json
    corrupted_severities = [int(s) for s in severities if int(s) > 0]
    means = {name: {metric: sum(table[name][str(s)][metric] for s in corrupted_severities) / len(corrupted_severities)
                    for metric in ("acc", "miou")} for name in corruptions} if corrupted_severities else {}
    summary = {"corruptions": list(corruptions), "severities": [int(s) for s in severities], "table": table,
               "mean": means, "overall": {metric: sum(m[metric] for m in means.values()) / len(means)
                                          for metric in ("acc", "miou")} if means else {}}
    if reference is not None:
        summary["reference"] = reference.get("source")
        summary["ce"], summary["mce"] = corruption_errors(table, reference["table"], corrupted_severities)
    return summary


def corruption_errors(table: dict, reference: dict, severities: list[int]) -> tuple[dict, dict]:
    """CE_c = sum_s (100 - m_{s,c}) / sum_s (100 - m^ref_{s,c}) in %, for m = ACC and mIoU; mCE the mean over c."""
    from robust_seg.errors import ConfigError

    ce = {}
    for name, by_severity in table.items():
        ref = reference.get(name)
        if ref is None or any(str(s) not in ref for s in severities):
            raise ConfigError(f"attack.options.reference: the reference run has no {name} at severities "
                              f"{severities}: run it with the same corruptions and severities")
        ce[name] = {}
        for metric in ("acc", "miou"):
            ours = sum(100 - by_severity[str(s)][metric] for s in severities)
            theirs = sum(100 - ref[str(s)][metric] for s in severities)
            ce[name][metric] = 100 * ours / theirs if theirs > 0 else float("nan")
    mce = {metric: sum(c[metric] for c in ce.values()) / len(ce) for metric in ("acc", "miou")}
    return ce, mce
