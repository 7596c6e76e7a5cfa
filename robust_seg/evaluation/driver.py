"""The evaluation driver: every batch, every radius, every attack component; resumable per batch.

Metrics follow the SEA paper Sec. 2.1: ACC is the mean over images of the
per-image pixel accuracy, mIoU comes from the confusion matrix of the
(worst-case) predictions over the dataset. Results go to ``results.json``,
``results.md``, a robust-accuracy-vs-radius plot, a figure of attacked images
and W&B. ``resume=true`` continues after the last finished batch and yields the
same final table as an uninterrupted run (the attack seed of a batch depends
only on the batch index and the radius).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch
from tqdm import tqdm

from robust_seg.attacks.invariants import check_linf_box
from robust_seg.attacks.registry import resolve_attack
from robust_seg.data import build_dataset, build_loader
from robust_seg.data import class_names as dataset_class_names
from robust_seg.errors import ConfigError
from robust_seg.evaluation.calibration import EvaluationCalibration
from robust_seg.evaluation.report import write_reports
from robust_seg.metrics.apsr import DEFAULT_NU as NU
from robust_seg.metrics.apsr import complexity_summary, default_eps_grid, norm_summary, not_fooled_curve
from robust_seg.evaluation.state import ComponentTotals
from robust_seg.models import build_model
from robust_seg.radii import format_radius, parse_radii
from robust_seg.reporting.files import append_jsonl, atomic_torch_save, atomic_write_text, read_jsonl
from robust_seg.reporting.logger import RunLogger
from robust_seg.runtime import seed_everything, select_device

log = logging.getLogger(__name__)
STATE_FILE = "evaluation_state.pt"
MINIMAL_NORM_KEY = "minimal_norm"
BATCHES_FILE = "batches.jsonl"


def _limit(dataset, max_images):
    if max_images is None or max_images >= len(dataset):
        return dataset
    return torch.utils.data.Subset(dataset, range(max_images))


def _load_state(run_dir: Path, resume: bool, fingerprint: dict) -> dict | None:
    path = run_dir / STATE_FILE
    if not path.exists():
        return None
    if not resume:
        raise ConfigError(f"{run_dir} already holds an evaluation: pass resume=true to continue it, "
                          "or another run_name")
    state = torch.load(path, weights_only=True)
    if state["fingerprint"] != fingerprint:
        raise ConfigError(f"resume=true but {run_dir} was evaluated with another configuration "
                          f"({state['fingerprint']} vs {fingerprint}); use another run_name")
    return state


def evaluate(cfg, run_dir: str | Path) -> dict:
    """Evaluate ``cfg.model`` on ``cfg.dataset`` under ``cfg.attack`` at every radius; return the results dict."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.runtime.threads:
        torch.set_num_threads(cfg.runtime.threads)
    device = select_device(cfg.runtime.device)
    seed_everything(cfg.seed, cfg.runtime.deterministic)
    radii = parse_radii(cfg.attack.eps)
    attack = resolve_attack(cfg.attack)
    attack.check_radii(radii)
    split = {"val": cfg.dataset.val_split, "train": cfg.dataset.train_split}.get(cfg.split, cfg.split)
    dataset = _limit(build_dataset(cfg.dataset, split=split, train=False), cfg.max_images)
    loader = build_loader(dataset, batch_size=cfg.batch_size, train=False, seed=cfg.seed,
                          num_workers=cfg.runtime.num_workers)
    model = build_model(cfg.model, cfg.dataset.num_classes).to(device).eval()
    model.requires_grad_(False)
    if cfg.runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    class_names = dataset_class_names(cfg.dataset)
    keys = [format_radius(r) for r in radii]
    # A minimal-norm attack runs once per batch; its radii only serve the robust-at-eps curve.
    runs = [(None, MINIMAL_NORM_KEY)] if attack.minimal_norm else list(zip(radii, keys))
    fingerprint = {"attack": attack.description, "radii": keys, "dataset": cfg.dataset.name,
                   "images": len(dataset), "batch_size": cfg.batch_size, "model": cfg.model.name}
    if cfg.calibration:
        fingerprint["calibration"] = {"temperature": str(cfg.calibration_temperature),
                                      "holdout": [cfg.calibration_holdout_fraction, cfg.calibration_holdout_seed]}
    state = _load_state(run_dir, cfg.resume, fingerprint)
    if state is None:
        state = {"fingerprint": fingerprint, "next_batch": 0, "seconds": 0.0, "figure": None, "totals": {}}
    totals = {key: {name: ComponentTotals.from_state(s) for name, s in comps.items()}
              for key, comps in state["totals"].items()}
    records = [r for r in read_jsonl(run_dir / BATCHES_FILE) if r["batch"] < state["next_batch"]]
    atomic_write_text(run_dir / BATCHES_FILE, "".join(json.dumps(r) + "\n" for r in records))
    calibration = EvaluationCalibration.start(cfg, model, device, state.get("calibration"))
    if state["next_batch"]:
        log.info("resuming after batch %d of %d", state["next_batch"], len(loader))

    num_classes = cfg.dataset.num_classes
    progress = tqdm(loader, desc=f"{attack.description}", unit="batch", dynamic_ncols=True)
    for batch_index, batch in enumerate(progress):
        if batch_index < state["next_batch"]:
            continue
        started = time.perf_counter()
        images, labels = batch["image"].to(device), batch["label"].to(device)
        if cfg.runtime.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        record = {"batch": batch_index, "names": list(batch["name"]), "acc": {}}
        figure = {} if state["figure"] is None else None
        for radius_index, (radius, key) in enumerate(runs):
            result = attack.run(model, images, labels, eps=radius, seed=(cfg.attack.seed, batch_index, radius_index))
            outcomes = {"worst_case": result, **result.components}
            for name, outcome in outcomes.items():
                check_linf_box(outcome.adv_images, images, radius if radius is not None else outcome.extras["norm"])
                comp = totals.setdefault(key, {}).setdefault(
                    name, ComponentTotals(torch.zeros(num_classes, num_classes, dtype=torch.long)))
                comp.add(outcome.predictions, labels, outcome.accuracy, outcome.extras)
            if calibration is not None:
                calibration.update(key, model, result.adv_images, labels)
            record["acc"][key] = {n: [round(100 * a, 4) for a in o.accuracy.tolist()] for n, o in outcomes.items()}
            if figure is not None:
                count = min(cfg.figure_images, images.shape[0])
                figure[key] = {"adv": result.adv_images[:count].cpu(), "pred": result.predictions[:count].cpu(),
                               "acc": result.accuracy[:count].cpu()}
        if figure is not None:
            figure["images"], figure["labels"] = images[: cfg.figure_images].cpu(), labels[: cfg.figure_images].cpu()
            state["figure"] = figure
        state["seconds"] += time.perf_counter() - started
        state["next_batch"] = batch_index + 1
        state["totals"] = {k: {n: c.state_dict() for n, c in comps.items()} for k, comps in totals.items()}
        if calibration is not None:
            state["calibration"] = calibration.state_dict()
        append_jsonl(run_dir / BATCHES_FILE, record)
        atomic_torch_save(run_dir / STATE_FILE, state)
        worst = totals[runs[-1][1]]["worst_case"]
        progress.set_postfix({f"acc@{runs[-1][1]}": f"{100 * sum(worst.accuracy) / len(worst.accuracy):.1f}"})

    results = {
        "attack": attack.description, "attack_note": cfg.attack.note, "model": cfg.model.name,
        "dataset": cfg.dataset.name, "split": cfg.split, "images": len(dataset), "seconds": state["seconds"],
        "radii": {key: {name: comp.summary(class_names) for name, comp in totals[key].items()}
                  for _, key in runs},
    }
    if attack.minimal_norm:
        results["minimal_norm"] = minimal_norm_summary(results["radii"].pop(MINIMAL_NORM_KEY)["worst_case"], radii,
                                                       state["seconds"])
    else:
        results["not_fooled_percentage"] = {key: 100.0 * sum(a < NU for a in results["radii"][key]["worst_case"][
            "per_image"]["apsr"]) / len(dataset) for key in keys}
    if calibration is not None:
        results["calibration"] = calibration.summary()
    logger = RunLogger(cfg.logger, run_dir, config=_plain_config(cfg), job_type="evaluate")
    try:
        write_reports(results, run_dir, state["figure"], class_names, logger)
    finally:
        logger.finish()
    return results


def minimal_norm_summary(entry: dict, radii: list[float], seconds: float) -> dict:
    """Thesis Table 5.1 (median/mean norm x 255), Table IV-2 (cost per image), Figure 5.3 and SEA App. C.4
    (% of images not brought to APSR >= 99% within eps) from the per-image norms and successes."""
    per_image = {k: torch.tensor(v) for k, v in entry["per_image"].items()}
    norms, success = per_image["norm"], per_image["success"].bool()
    return {
        **norm_summary(norms, success),
        "complexity": complexity_summary(per_image["forwards"], per_image["backwards"], seconds),
        "not_fooled_percentage": dict(zip([format_radius(r) for r in radii],
                                     not_fooled_curve(norms, success, radii)["percentage"])),
        "curve": not_fooled_curve(norms, success, default_eps_grid()),
        "adversarial": {k: entry[k] for k in ("acc", "miou", "images")},
        "per_image": entry["per_image"],
    }


def _plain_config(cfg) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else dict(cfg)
