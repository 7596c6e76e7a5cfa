"""The training loop (SEA paper Sec. 3, App. B.2; thesis Algorithm 6.2 for the CALS schemes).

One loop serves every scheme: the scheme decides how inputs are made (clean or
PGD adversarial examples, ``scheme.adversarial``) and which loss trains on them
(``scheme.loss``: CE, LS, FL, ECP, MbLS, CALS). Single process or torchrun/DDP;
the global batch ``batch_size`` is kept on fewer devices by gradient
accumulation. A checkpoint is written atomically after every epoch;
``resume=true`` continues from it and ends with the same weights as an
uninterrupted run (deterministic data order, augmentation and RNG states).
"""
from __future__ import annotations

import json
import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

from robust_seg import IGNORE_INDEX
from robust_seg.config_checks import plain_config
from robust_seg.data import build_dataset, build_loader, set_epoch
from robust_seg.data import class_names as dataset_class_names
from robust_seg.data.splits import split_train_validation
from robust_seg.errors import ConfigError, RobustSegError
from robust_seg.models import build_model
from robust_seg.reporting.files import atomic_torch_save, atomic_write_json
from robust_seg.reporting.logger import RunLogger
from robust_seg.run.directory import RunDirectory
from robust_seg.run.progress import RunProgress
from robust_seg.run.provenance import check_resume, command_overrides, fingerprint, software
from robust_seg.run.runtime import Distributed, init_distributed, set_up_run, shared_run_dir
from robust_seg.training.adversary import adversarial_examples
from robust_seg.training.checkpoint import load_checkpoint, save_checkpoint, set_rng_state
from robust_seg.training.config import check_train_config, train_loss_options
from robust_seg.training.losses import TrainLoss, build_train_loss
from robust_seg.training.optim import build_optimizer, build_scheduler
from robust_seg.training.validation import validate

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoints/last.pt"
FINAL_WEIGHTS = "model.pt"
"""The final weights, written into the run directory at the end of every training (``model.checkpoint=`` of an
evaluation takes them; ``export_path`` writes a second copy elsewhere)."""


def loss_is_finite_everywhere(loss: torch.Tensor, distributed: Distributed) -> bool:
    """Whether the loss is finite on every rank. Under DDP the decision is collective (one scalar all-reduce),
    so that a rank whose loss diverged stops all of them together instead of leaving the others waiting in
    the next gradient all-reduce."""
    finite = torch.isfinite(loss.detach()).to(torch.float32).reshape(1)
    if distributed.enabled:
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    return bool(finite.item() > 0)


class TrainingDiverged(RobustSegError):
    """The loss became NaN or infinite."""


def _uses_validation_split(loss: TrainLoss) -> bool:
    return type(loss).accumulate_validation is not TrainLoss.accumulate_validation


def training_loss(network, images: torch.Tensor, labels: torch.Tensor, train_loss: TrainLoss,
                  auxiliary_weight: float) -> torch.Tensor:
    """The scheme's loss on the main head + ``auxiliary_weight`` x CE on the auxiliary head (Table 5: 0.4)."""
    logits, auxiliary = network(images, auxiliary=True)
    loss = train_loss(logits, labels)
    if auxiliary is not None and auxiliary_weight:
        loss = loss + auxiliary_weight * F.cross_entropy(auxiliary.float(), labels, ignore_index=IGNORE_INDEX)
    return loss


def _batch_geometry(cfg, world_size: int) -> tuple[int, int]:
    """(micro batch per process, accumulation steps) such that micro * accumulation * world = batch_size."""
    micro = cfg.micro_batch_size or max(cfg.batch_size // world_size, 1)
    accumulation, remainder = divmod(cfg.batch_size, micro * world_size)
    if remainder or accumulation < 1:
        raise ConfigError(f"batch_size={cfg.batch_size} is not a multiple of micro_batch_size={micro} x "
                          f"{world_size} processes; choose micro_batch_size to divide it")
    return micro, accumulation


def _resume_state(checkpoint_path: Path, resume: bool, new_fingerprint: dict) -> dict | None:
    """The checkpoint to continue from (None for a new run); refuses a rerun without ``resume=true`` and a resume
    whose result-changing settings differ from the run's (one line naming each key)."""
    if not checkpoint_path.exists():
        return None
    run_dir = checkpoint_path.parent.parent
    if not resume:
        raise ConfigError(f"{run_dir} already holds a training run: pass resume=true to continue it, "
                          "or another run_name")
    state = load_checkpoint(checkpoint_path)
    old = json.loads(state["fingerprint"]) if "fingerprint" in state else {}
    check_resume(old, new_fingerprint, run_dir, "trained")
    return state


@dataclass
class Training:
    """Everything :func:`prepare_training` builds: the checked config, run directory, data, model, optimiser and
    the state a resumed run continues from (``start_epoch``, ``history``)."""

    cfg: object
    run: RunDirectory
    distributed: Distributed
    device: torch.device
    train_loss: TrainLoss
    loader: object
    steps_per_epoch: int
    micro_batch: int
    accumulation: int
    val_set: object
    multiplier_set: object
    model: torch.nn.Module
    network: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    scaler: torch.amp.GradScaler
    use_amp: bool
    checkpoint_path: Path
    run_fingerprint: dict
    class_names: list[str]
    start_epoch: int = 0
    history: list[dict] = field(default_factory=list)
    progress: RunProgress | None = None


def _run_directory(run_dir: str | Path | RunDirectory, distributed: Distributed) -> RunDirectory:
    main = distributed.is_main
    if not isinstance(run_dir, RunDirectory):
        return RunDirectory(shared_run_dir(run_dir, distributed), is_main=main)
    shared = shared_run_dir(run_dir.path, distributed)
    if not main:
        run_dir.follow(shared)
    run_dir.is_main = main  # only rank 0 writes the record and the log (RANK may be known only now: submitit)
    return run_dir


def _training_sets(cfg, train_loss: TrainLoss, loss_name: str):
    """(training set, held-out set for the CALS multipliers or None, validation set)."""
    train_set = build_dataset(cfg.dataset, split=cfg.dataset.train_split, train=True)
    multiplier_set = None
    hold_out = cfg.scheme.hold_out_validation
    if _uses_validation_split(train_loss) or hold_out:
        if hold_out is False:
            raise ConfigError(f"scheme.hold_out_validation=false, but the {loss_name} loss needs the held-out "
                              "split for its multipliers")
        train_ids, held_out = split_train_validation(len(train_set), cfg.scheme.validation_fraction, cfg.seed)
        if _uses_validation_split(train_loss):
            multiplier_set = torch.utils.data.Subset(
                build_dataset(cfg.dataset, split=cfg.dataset.train_split, train=False), held_out)
        train_set = torch.utils.data.Subset(train_set, train_ids)
    return train_set, multiplier_set, build_dataset(cfg.dataset, split=cfg.dataset.val_split, train=False)


def prepare_training(cfg, run_dir: str | Path | RunDirectory) -> Training:
    """Check every input, accept the run directory, build data, model and optimiser, and load the state of a
    resumed run."""
    check_train_config(cfg)
    distributed = init_distributed(cfg.runtime.device)
    run = _run_directory(run_dir, distributed)
    device = set_up_run(cfg.runtime, cfg.seed, distributed.local_rank)
    checkpoint_path = run.path / CHECKPOINT
    run_fingerprint = fingerprint(plain_config(cfg))
    resumed = _resume_state(checkpoint_path, cfg.resume, run_fingerprint)
    run.accept(cfg)  # inputs checked, the directory accepted: the record, and log lines go to <run dir>/train.log

    num_classes = cfg.dataset.num_classes
    loss_name, loss_options = train_loss_options(cfg.scheme.loss)
    train_loss = build_train_loss(loss_name, num_classes, **loss_options)
    train_set, multiplier_set, val_set = _training_sets(cfg, train_loss, loss_name)
    micro, accumulation = _batch_geometry(cfg, distributed.world_size)
    loader = build_loader(train_set, micro, train=True, seed=cfg.seed, num_workers=cfg.runtime.num_workers,
                          distributed=distributed.enabled)
    steps_per_epoch = len(loader) // accumulation
    if cfg.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
    if steps_per_epoch < 1:
        raise ConfigError(f"the training split has {len(train_set)} images: fewer than one batch of "
                          f"{cfg.batch_size}; lower batch_size")
    if distributed.is_main:
        log.info("%d process(es) x micro batch %d x %d accumulation step(s) = global batch %d",
                 distributed.world_size, micro, accumulation, cfg.batch_size)

    model = build_model(cfg.model, num_classes).to(device)
    if cfg.runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(cfg.optimizer, model)
    scheduler = build_scheduler(cfg.schedule, optimizer, steps_per_epoch)
    use_amp = cfg.runtime.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    start_epoch, history = 0, []
    if resumed is not None:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        scheduler.load_state_dict(resumed["scheduler"])
        scaler.load_state_dict(resumed["scaler"])
        train_loss.load_state_dict(resumed["loss"])
        set_rng_state(resumed["rng"])
        start_epoch, history = resumed["epoch"], list(resumed["history"])
        log.info("resumed from %s after epoch %d", checkpoint_path, start_epoch)
    network = model
    if distributed.enabled:
        network = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    return Training(cfg, run, distributed, device, train_loss, loader, steps_per_epoch, micro, accumulation, val_set,
                    multiplier_set, model, network, optimizer, scheduler, scaler, use_amp, checkpoint_path,
                    run_fingerprint, dataset_class_names(cfg.dataset), start_epoch, history)


def train_epoch(training: Training, epoch: int) -> dict:
    """One epoch of optimiser steps (each over ``accumulation`` micro batches, adversarial where the scheme says),
    then the CALS multipliers; the epoch's history entry (mean training loss over ranks, lr, seconds)."""
    cfg, device, distributed = training.cfg, training.device, training.distributed
    started = time.perf_counter()
    set_epoch(training.loader, epoch)
    training.network.train()
    running, seen = torch.zeros((), device=device), 0
    batches = iter(training.loader)
    for step in range(training.steps_per_epoch):
        for micro_step in range(training.accumulation):
            batch = next(batches)
            images, labels = batch["image"].to(device), batch["label"].to(device)
            if cfg.scheme.adversarial is not None:
                images = adversarial_examples(training.model, images, labels, cfg.scheme.adversarial)
            if cfg.runtime.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            last = micro_step == training.accumulation - 1
            sync = nullcontext() if last or not distributed.enabled else training.network.no_sync()
            with sync, torch.autocast(device.type, enabled=training.use_amp):
                loss = training_loss(training.network, images, labels, training.train_loss, cfg.auxiliary_weight)
                training.scaler.scale(loss / training.accumulation).backward()
            if not loss_is_finite_everywhere(loss, distributed):
                raise TrainingDiverged(
                    f"training loss is {loss.item() if distributed.world_size == 1 else 'not finite on a rank'} "
                    f"at epoch {epoch + 1}, step {step + 1}; the last good "
                    f"checkpoint is kept in {training.checkpoint_path} (lower optimizer.lr or enable warmup)")
            running += loss.detach()
            seen += 1
        training.scaler.step(training.optimizer)
        training.scaler.update()
        training.optimizer.zero_grad(set_to_none=True)
        training.scheduler.step()
        training.progress.update(1)

    if training.multiplier_set is not None:
        update_multipliers(training.model, training.train_loss, training.multiplier_set, training.micro_batch, device,
                           epoch)
    entry = {"epoch": epoch + 1, "train_loss": (running / max(seen, 1)).item(),
             "lr": training.scheduler.get_last_lr()[0], "seconds": time.perf_counter() - started}
    if distributed.enabled:
        loss_sum = torch.tensor([entry["train_loss"]], device=device)
        dist.all_reduce(loss_sum)
        entry["train_loss"] = loss_sum.item() / distributed.world_size
    return entry


def end_of_epoch(training: Training, entry: dict, logger: RunLogger) -> None:
    """Validate when due, record the multipliers, and (rank 0) log the entry and save the checkpoint atomically."""
    cfg, epoch = training.cfg, entry["epoch"]
    main = training.distributed.is_main
    if main and (epoch % cfg.eval_every == 0 or epoch == cfg.schedule.epochs):
        entry.update(validate(training.model, training.val_set, cfg, training.device, training.class_names))
    if training.train_loss.multipliers_history:
        entry["multipliers"] = training.train_loss.multipliers_history[-1].tolist()
    training.history.append(entry)
    if main:
        log.info("epoch %d: %s%s", epoch, {k: v for k, v in entry.items() if k != "multipliers"},
                 f"; {training.progress.status()}" if training.progress is not None else "")
        if training.progress is not None:
            training.progress.milestone(f"epoch {epoch}/{cfg.schedule.epochs}, loss {entry['train_loss']:.3f}")
        save_checkpoint(training.checkpoint_path, model=training.model.state_dict(),
                        optimizer=training.optimizer.state_dict(), scheduler=training.scheduler.state_dict(),
                        scaler=training.scaler.state_dict(), loss=training.train_loss.state_dict(), epoch=epoch,
                        history=training.history, fingerprint=json.dumps(training.run_fingerprint))
        logger.log_epoch(entry)
    if training.distributed.enabled:
        dist.barrier()


def finish_training(training: Training, logger: RunLogger) -> dict:
    """The results (history, final metrics, provenance); rank 0 writes them, exports the weights and plots."""
    cfg, history, run_dir = training.cfg, training.history, training.run.path
    results = {"epochs": cfg.schedule.epochs, "history": history,
               "provenance": {"model": {"name": cfg.model.name, **training.model.weights},
                              "overrides": command_overrides(), "software": software(), "config": plain_config(cfg)},
               "final": {k: v for k, v in history[-1].items() if k != "multipliers"} if history else {}}
    results["weights"] = str(run_dir / FINAL_WEIGHTS)
    if training.distributed.is_main:
        atomic_torch_save(run_dir / FINAL_WEIGHTS, training.model.state_dict())  # always, in the run directory
        if cfg.export_path:
            atomic_torch_save(Path(cfg.export_path), training.model.state_dict())
            log.info("exported model weights to %s", cfg.export_path)
        atomic_write_json(run_dir / "train_results.json", results)
        if training.train_loss.multipliers_history:
            from robust_seg.training.plots import plot_multipliers

            plot_multipliers(training.train_loss.multipliers_history, training.class_names, run_dir / "multipliers.png")
            logger.image("multipliers", run_dir / "multipliers.png")
        logger.summary(results["final"])
    return results


def train(cfg, run_dir: str | Path | RunDirectory) -> dict:
    """Train ``cfg.model`` on ``cfg.dataset`` with ``cfg.scheme``; return the final metrics and history."""
    training = prepare_training(cfg, run_dir)
    training.progress = RunProgress(cfg.schedule.epochs * training.steps_per_epoch, "train", "step",
                                    done=training.start_epoch * training.steps_per_epoch,
                                    enabled=training.distributed.is_main)
    logger = RunLogger(cfg.logger, training.run.path, {**plain_config(cfg), "software": software()}, "train",
                       enabled=training.distributed.is_main)
    logger.log_missing(training.history)  # epochs a killed run saved but had not yet logged
    try:
        for epoch in range(training.start_epoch, cfg.schedule.epochs):
            end_of_epoch(training, train_epoch(training, epoch), logger)
        return finish_training(training, logger)
    finally:
        training.progress.close()
        logger.finish()
        if not isinstance(run_dir, RunDirectory):
            training.run.detach_log()


@torch.no_grad()
def update_multipliers(model, train_loss: TrainLoss, held_out, batch_size: int, device, epoch: int) -> None:
    """CALS outer step (thesis Algorithm 6.2): statistics on the held-out split, then the multiplier update."""
    was_training = model.training
    model.eval()
    loader = build_loader(held_out, batch_size, train=False, seed=0,
                          distributed=dist.is_available() and dist.is_initialized())
    for batch in loader:
        train_loss.accumulate_validation(model(batch["image"].to(device)), batch["label"].to(device))
    train_loss.update_multipliers(epoch)
    model.train(was_training)
