"""The evaluation driver: every batch, every radius, every attack component; resumable per batch.

Metrics follow the SEA paper Sec. 2.1: ACC is the mean over images of the
per-image pixel accuracy, mIoU comes from the confusion matrix of the
(worst-case) predictions over the dataset. Results go to ``results.json``,
``results.md``, a robust-accuracy-vs-radius plot, a figure of attacked images
and W&B. ``resume=true`` continues after the last finished batch and yields the
same final table as an uninterrupted run (the attack seed of a batch depends
only on the batch index and the radius); it is refused, naming the keys, when
anything that changes results differs (``robust_seg.run.provenance``).

Three stages: :func:`prepare` checks the config and builds data, model and attack (nothing is written before
it succeeds), :func:`run_batches` attacks and records batch after batch, :func:`finish` writes the reports.
Shards (torchrun ranks or ``shard=k num_shards=N``) evaluate interleaved parts of the images and merge exactly
(``robust_seg.evaluation.shards``).
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from robust_seg.attacks.invariants import check_linf_box
from robust_seg.attacks.progress import reporting
from robust_seg.config_checks import plain_config
from robust_seg.data import build_dataset, build_loader
from robust_seg.data import class_names as dataset_class_names
from robust_seg.data.protocols import EvalProtocol, eval_protocol, keeps_image_sizes, resolve_protocol
from robust_seg.errors import ConfigError, RobustSegError
from robust_seg.evaluation.calibration import EvaluationCalibration
from robust_seg.evaluation.config import check_evaluate_config
from robust_seg.evaluation.diagnostics import Diagnostics
from robust_seg.evaluation.finite import check_finite_attacked, check_finite_logits
from robust_seg.evaluation.report import preload_plotting, write_reports
from robust_seg.evaluation.results import build_results
from robust_seg.evaluation.shards import SHARDS_DIR, STATE_FILE, Shard, merge_states
from robust_seg.evaluation.state import ComponentTotals
from robust_seg.models import build_model
from robust_seg.models.defenses import DefendedModel, defend
from robust_seg.models.external import check_model_output
from robust_seg.names import WORST
from robust_seg.radii import Radius
from robust_seg.reporting.files import append_jsonl, atomic_torch_save, atomic_write_text, load_state, read_jsonl
from robust_seg.reporting.logger import RunLogger
from robust_seg.run.directory import RunDirectory
from robust_seg.run.progress import RunProgress
from robust_seg.run.provenance import check_resume, command_overrides, fingerprint, software, weights_label
from robust_seg.run.runtime import Distributed, init_distributed, set_up_run, shared_run_dir

log = logging.getLogger(__name__)

BATCHES_FILE = "batches.jsonl"


@dataclass
class Evaluation:
    """Everything :func:`prepare` builds: checked inputs, data, model, attack and the run's provenance."""

    cfg: object
    run: RunDirectory
    device: torch.device
    radii: list[Radius]
    attack: object
    dataset: object
    loader: object
    model: torch.nn.Module
    runs: list
    class_names: list[str]
    provenance: dict
    fingerprint: dict
    shard: Shard


def _limit(dataset, max_images):
    if max_images is None or max_images >= len(dataset):
        return dataset
    return torch.utils.data.Subset(dataset, range(max_images))


def _load_state(run_dir: Path, resume: bool, new_fingerprint: dict) -> dict | None:
    path = run_dir / STATE_FILE
    if not path.exists():
        return None
    if not resume:
        raise ConfigError(f"{run_dir} already holds an evaluation: pass resume=true to continue it, "
                          "or another run_name")
    state = load_state(path, "the evaluation state", "delete it (and batches.jsonl) to evaluate this run again from the "
                       "start, or restore it from a copy; the run's other files are unchanged")
    check_resume(json.loads(state["fingerprint"]) if isinstance(state["fingerprint"], str) else state["fingerprint"],
                 new_fingerprint, run_dir, "evaluated")
    return state


def prepare(cfg, run: RunDirectory, shard: Shard = Shard(), local_rank: int = 0, model=None, data=None) -> Evaluation:
    """Check every input, then build data, model and attack; nothing is written to the run directory. ``model`` and
    ``data`` (``robust_seg.data.user.UserData``) come from the Python API instead of the config."""
    radii, attack = check_evaluate_config(cfg)
    protocol = apply_protocol(cfg)
    device = set_up_run(cfg.runtime, cfg.seed, local_rank)
    split = {"val": cfg.dataset.val_split, "train": cfg.dataset.train_split}.get(cfg.split, cfg.split)
    whole = _limit(data if data is not None else build_dataset(cfg.dataset, split=split, train=False), cfg.max_images)
    total_images = len(whole)
    dataset = whole if shard.whole else torch.utils.data.Subset(whole, shard.indices(total_images, cfg.batch_size))
    loader = build_loader(dataset, batch_size=cfg.batch_size, train=False, seed=cfg.seed,
                          num_workers=cfg.runtime.num_workers)
    name = cfg.model.name
    if model is None:
        model = build_model(cfg.model, cfg.dataset.num_classes)
    else:  # a module given through the Python API (robust_seg.api.evaluate)
        name = f"python:{type(model).__name__}"
        if not hasattr(model, "weights"):
            model.weights = {"source": "module", "checkpoint": None, "sha256": None, "backbone": None}
    model = defend(model.to(device), cfg.model.get("input_transforms")).eval()
    model.requires_grad_(False)
    check_model_output(model, cfg.dataset.num_classes, device, what=f"model {name}")
    if cfg.runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    runs = attack.runs(radii)
    config = plain_config(cfg)
    provenance = {
        "model": {"name": name, **model.weights, "label": weights_label(model.weights),
                  **({"target": cfg.model.target} if cfg.model.target else {}),
                  **({"input_transforms": model.describe(), "randomized": model.randomized,
                      **({"accuracy_draws": 1} if model.randomized else {})}  # R: fresh draws per image in ACC
                     if isinstance(model, DefendedModel) else {}),
                  **({"config": cfg.model.config} if cfg.model.config else {})},
        "dataset": {"name": cfg.dataset.name if data is None else data.name, "root": None if data else cfg.dataset.root,
                    "split": split, "images": total_images, "num_classes": cfg.dataset.num_classes,
                    **({} if data is None else {"fingerprint": data.fingerprint}),
                    "protocol": {"name": protocol.protocol, "outlines": protocol.outlines,
                                 "description": protocol.describe()}},
        "attack": {"name": attack.name, "label": attack.label, "description": attack.description,
                   "config": config["attack"]},
        "radii": [radius.key for radius in radii],
        "seeds": {"seed": cfg.seed, "attack": cfg.attack.seed, "dataset": cfg.dataset.seed},
        "batch_size": cfg.batch_size,
        "overrides": command_overrides(),
        "software": software(),
        "config": config,
    }
    facts = {"weights.sha256": model.weights["sha256"], "weights.backbone": model.weights["backbone"],
             "dataset.images": total_images, "shard": shard.index, "num_shards": shard.count,
             **({} if data is None else {"dataset.fingerprint": data.fingerprint})}
    class_names = dataset_class_names(cfg.dataset) if data is None else data.class_names
    return Evaluation(cfg, run, device, radii, attack, dataset, loader, model, runs, class_names, provenance,
                      fingerprint(config, **facts), shard)


def apply_protocol(cfg) -> EvalProtocol:
    """Resolve ``dataset.protocol`` and ``dataset.outlines`` in ``cfg`` (the zoo entry's protocol unless the dataset
    names one; ``robust_seg.data.protocols``) and evaluate images that keep their own sizes one at a time, as the
    official codes do (padding them into a batch would change what the model sees); return the protocol."""
    protocol, outlines = resolve_protocol(cfg.dataset, cfg.model.get("zoo"))
    cfg.dataset.protocol, cfg.dataset.outlines = protocol, outlines
    if keeps_image_sizes(cfg.dataset) and cfg.batch_size > 1:
        log.warning("batch_size %d -> 1: protocol %s keeps each %s image's own size (images of different sizes do "
                    "not batch; the official code evaluates them one at a time)", cfg.batch_size, protocol,
                    cfg.dataset.name)
        cfg.batch_size = 1
    return eval_protocol(cfg.dataset)


def run_batches(evaluation: Evaluation, state: dict) -> tuple[dict, EvaluationCalibration | None]:
    """Attack every batch not yet done at every radius; after each, append its record and save the state."""
    cfg, run_dir, device, attack, runs = evaluation.cfg, evaluation.run.path, evaluation.device, evaluation.attack, \
        evaluation.runs
    totals = {key: {name: ComponentTotals.from_state(s) for name, s in comps.items()}
              for key, comps in state["totals"].items()}
    if (run_dir / BATCHES_FILE).exists():  # drop records of a batch whose state was not saved (killed in between)
        records = [r for r in read_jsonl(run_dir / BATCHES_FILE) if r["batch"] < state["next_batch"]]
        atomic_write_text(run_dir / BATCHES_FILE, "".join(json.dumps(r) + "\n" for r in records))
    calibration = EvaluationCalibration.start(cfg, evaluation.model, device, state.get("calibration"))
    diagnostics = None
    if cfg.diagnostics and not attack.minimal_norm and not attack.corruption and attack.name != "none":
        diagnostics = Diagnostics.from_state(state["diagnostics"]) if state.get("diagnostics") else \
            Diagnostics([key for _, key in runs])
    if state["next_batch"]:
        log.info("resuming after batch %d of %d", state["next_batch"], len(evaluation.loader))
    batches = len(evaluation.loader)
    passes = [1 if radius == 0 else attack.expected_passes() for radius, _ in runs]
    counted = None not in passes  # passes of every run known: the meter counts passes, else batches
    per_batch = sum(passes) if counted else 1
    progress = RunProgress(batches * per_batch, attack.label, "pass" if counted else "batch",
                           done=state["next_batch"] * per_batch)
    try:
        _attack_batches(evaluation, state, totals, calibration, diagnostics, progress, per_batch, counted)
    finally:
        progress.close()
    if not state.get("finished"):
        state["finished"] = True
        atomic_torch_save(run_dir / STATE_FILE, state)
    return totals, calibration, diagnostics


def _attack_batches(evaluation: Evaluation, state: dict, totals: dict, calibration, diagnostics,
                    progress: RunProgress, per_batch: int, counted: bool) -> None:
    """The batches not yet done, each attacked at every radius, recorded and saved (``run_batches``)."""
    cfg, run_dir, device, attack, runs = evaluation.cfg, evaluation.run.path, evaluation.device, evaluation.attack, \
        evaluation.runs
    num_classes = cfg.dataset.num_classes
    for batch_index, batch in enumerate(evaluation.loader):
        if batch_index < state["next_batch"]:
            continue
        started = time.perf_counter()
        images, labels = batch["image"].to(device), batch["label"].to(device)
        if cfg.runtime.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        check_finite_logits(evaluation.model, images, batch["name"], batch_index)
        indices = [int(i) for i in batch["index"]]
        record = {"batch": batch_index, "names": list(batch["name"]), "indices": indices, "acc": {}}
        figure = {} if state["figure"] is None and cfg.figure_images > 0 and not attack.corruption else None
        by_radius = {}
        for radius_index, (radius, key) in enumerate(runs):
            # the attack's passes (iterations, queries) move the run's one progress meter and its ETA
            with reporting(progress.update if counted else lambda passes: None):
                result = attack.run(evaluation.model, images, labels, eps=radius,
                                    seed=(cfg.attack.seed, radius_index), image_indices=indices)
            outcomes = {WORST: result, **result.components}
            if radius != 0:
                check_finite_attacked(evaluation.model, outcomes, batch["name"], batch_index, key, attack.label)
            for name, outcome in outcomes.items():
                if not attack.corruption:  # a corruption is no perturbation of bounded norm
                    check_linf_box(outcome.adv_images, images,
                                   radius if radius is not None else outcome.extras["norm"])
                comp = totals.setdefault(key, {}).setdefault(
                    name, ComponentTotals(torch.zeros(num_classes, num_classes, dtype=torch.long)))
                comp.add(outcome.predictions, labels, outcome.extras, indices)
            if calibration is not None:
                try:
                    calibration.update(key, evaluation.model, result.adv_images, labels)
                except RobustSegError as error:  # e.g. NaN logits: name the batch and the radius
                    raise type(error)(f"batch {batch_index} (images {', '.join(map(str, batch['name'][:4]))}), "
                                      f"radius {key}: {error}") from None
            record["acc"][key] = {n: [round(a, 4) for a in o.accuracy.tolist()] for n, o in outcomes.items()}
            by_radius[key] = result
            if figure is not None:
                count = min(cfg.figure_images, images.shape[0])
                figure[key] = {"adv": result.adv_images[:count].cpu(), "pred": result.predictions[:count].cpu(),
                               "acc": result.accuracy[:count].cpu() / 100}
        if diagnostics is not None:
            diagnostics.on_batch(evaluation.model, attack, images, labels, indices, runs, by_radius, cfg.attack.seed)
            state["diagnostics"] = diagnostics.state_dict()
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
        worst = totals[runs[-1][1]][WORST]
        accuracy = 100 * sum(worst.accuracy) / len(worst.accuracy)
        progress.update(max((batch_index + 1) * per_batch - progress.units, 0))
        progress.milestone(f"batch {batch_index + 1}/{len(evaluation.loader)}, ACC@{runs[-1][1]} {accuracy:.1f}%")
        log.info("batch %d/%d done in %.1f s (worst-case ACC so far at %s: %.1f%%); %s", batch_index + 1,
                 len(evaluation.loader), time.perf_counter() - started, runs[-1][1], accuracy, progress.status())


def finish(evaluation: Evaluation, state: dict, totals: dict, calibration, diagnostics=None) -> dict:
    """The results of a finished evaluation, written to results.json, results.md, plots and W&B."""
    return report(evaluation.cfg, evaluation.attack, evaluation.radii, evaluation.run, evaluation.provenance, totals,
                  calibration, state, evaluation.class_names, evaluation.shard, diagnostics)


def report(cfg, attack, radii: list[Radius], run: RunDirectory, provenance: dict, totals: dict, calibration,
           state: dict, class_names: list[str], shard: Shard = Shard(), diagnostics: Diagnostics | None = None) -> dict:
    """Results from the totals (one process, a shard, or merged shards; ``evaluation/results.py``) written to
    ``results.json``, ``results.md``, the plots and W&B in the run directory; returns ``results.json``'s dictionary
    with the report's text and the run directory."""
    results = build_results(cfg, attack, radii, provenance, totals, calibration, state, class_names, shard,
                            diagnostics)
    logger = RunLogger(cfg.logger, run.path, config=provenance, job_type="evaluate")
    try:
        report_text = write_reports(results, run.path, state["figure"], class_names, logger)
    finally:
        logger.finish()
    run.write_to_log(report_text)
    return {**results.as_dict(), "report": report_text, "run_directory": str(run.path)}


def _start_state(evaluation: Evaluation) -> dict:
    return {"fingerprint": json.dumps(evaluation.fingerprint), "provenance": json.dumps(evaluation.provenance),
            "shard": [evaluation.shard.index, evaluation.shard.count], "total_images": evaluation.provenance[
                "dataset"]["images"], "next_batch": 0, "seconds": 0.0, "figure": None, "totals": {}, "finished": False}


def evaluate(cfg, run_dir: str | Path | RunDirectory, model=None, data=None) -> dict:
    """Evaluate ``cfg.model`` on ``cfg.dataset`` under ``cfg.attack`` at every radius; return the results dict.

    Under torchrun (several processes) rank r evaluates shard r of the images into ``<run dir>/shards/<r>`` and
    rank 0 merges them into the run directory; ``shard=k num_shards=N`` evaluates one shard as its own run.
    """
    run = run_dir if isinstance(run_dir, RunDirectory) else RunDirectory(run_dir)
    distributed = init_distributed(cfg.runtime.device)  # one process: Distributed() without a process group
    try:
        if distributed.enabled:
            return _evaluate_distributed(cfg, run, distributed)
        return _evaluate_shard(cfg, run, Shard(cfg.shard, cfg.num_shards), model=model, data=data)
    finally:
        if not isinstance(run_dir, RunDirectory):
            run.detach_log()


def _evaluate_shard(cfg, run: RunDirectory, shard: Shard, local_rank: int = 0, write_reports_: bool = True,
                    model=None, data=None) -> dict:
    evaluation = prepare(cfg, run, shard, local_rank, model, data)
    state = _load_state(run.path, cfg.resume, evaluation.fingerprint) or _start_state(evaluation)
    run.accept(cfg)
    if evaluation.model.weights["source"] in ("random", "backbone"):
        log.warning("evaluating a model WITHOUT trained weights (%s): model.random_weights=true",
                    weights_label(evaluation.model.weights))
    log.info("model %s: %s; data %s/%s (%d images%s); attack %s", cfg.model.name,
             evaluation.provenance["model"]["label"], evaluation.provenance["dataset"]["name"],
             evaluation.provenance["dataset"]["split"],
             len(evaluation.dataset), "" if shard.whole else f", {shard.describe()}", evaluation.attack.description)
    totals, calibration, diagnostics = run_batches(evaluation, state)
    if not write_reports_:
        return {"shard": shard.index}
    if not len(evaluation.dataset):  # a shard beyond the last batch: nothing to report but that
        report_text = f"# {shard.describe()}: no image (the evaluation has fewer batches than shards)\n"
        results = {"images": 0, "shard": {"index": shard.index, "count": shard.count},
                   "provenance": evaluation.provenance}
        atomic_write_text(run.path / "results.json", json.dumps(results, indent=2) + "\n")
        atomic_write_text(run.path / "results.md", report_text)
        return {**results, "report": report_text, "run_directory": str(run.path)}
    return finish(evaluation, state, totals, calibration, diagnostics)


def _evaluate_distributed(cfg, run: RunDirectory, distributed: Distributed) -> dict:
    """torchrun: each rank evaluates its shard into shards/<rank>; rank 0 merges them into the run directory."""
    import torch.distributed as dist

    if cfg.num_shards != 1:
        raise ConfigError("shard/num_shards split one evaluation into independent jobs; under torchrun the ranks "
                          "are the shards: drop shard= and num_shards=")
    shared = shared_run_dir(run.path, distributed)
    if not distributed.is_main:
        run.follow(shared)
    shard = Shard(distributed.rank, distributed.world_size)
    shard_run = RunDirectory(run.path / SHARDS_DIR / str(distributed.rank), job_name=run.job_name)
    if distributed.is_main and (run.path / "results.json").exists() and not cfg.resume:
        raise ConfigError(f"{run.path} already holds an evaluation: pass resume=true to continue it, "
                          "or another run_name")
    try:
        _evaluate_shard(cfg, shard_run, shard, distributed.local_rank, write_reports_=False)
    finally:
        shard_run.detach_log()
    if distributed.is_main:  # while the other shards finish: the merged report's figures need the plotting library
        preload_plotting()
    dist.barrier()
    if not distributed.is_main:
        return {"shard": shard.index, "run_directory": str(run.path)}
    run.accept(cfg)
    return merge_into(cfg, sorted((run.path / SHARDS_DIR).iterdir(), key=lambda p: int(p.name)), run)


def merge_into(cfg, directories: list[Path], run: RunDirectory) -> dict:
    """Merge finished shards (``robust_seg.evaluation.shards.merge_states``) and write the complete reports."""
    from robust_seg.attacks.registry import resolve_attack
    from robust_seg.radii import parse_radii

    merged = merge_states(directories)
    provenance = merged["provenance"]
    provenance["shards"] = merged["shards"]
    state = {"seconds": merged["seconds"], "figure": merged["figure"]}
    attack = resolve_attack(cfg.attack)
    return report(cfg, attack, parse_radii(cfg.attack.eps), run, provenance, merged["totals"], merged["calibration"],
                  state, dataset_class_names(cfg.dataset), diagnostics=merged["diagnostics"])
