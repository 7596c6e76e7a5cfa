"""Process-level set-up shared by evaluation and training: device, threads, seeds, torchrun/DDP, the run directory's
path across ranks."""
from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from robust_seg.errors import ConfigError
from robust_seg.run.launch import check_processes


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def select_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> the local GPU when there is one, else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"runtime.device={name} but no CUDA device is available (use runtime.device=cpu)")
        return torch.device("cuda", local_rank) if name == "cuda" else torch.device(name)
    if name != "cpu":
        raise ConfigError(f"runtime.device must be auto, cpu or cuda[:N], got '{name}'")
    return torch.device("cpu")


def set_up_run(runtime, seed: int, local_rank: int = 0) -> torch.device:
    """The one set-up of a run's process, for evaluation and training alike: ``runtime.threads`` torch threads
    (when given), the device (``runtime.device``; ``auto`` = this rank's GPU or CPU) and every seed
    (``seed_everything``, deterministic kernels with ``runtime.deterministic``). Returns the device."""
    if runtime.threads:
        torch.set_num_threads(runtime.threads)
    device = select_device(runtime.device, local_rank)
    seed_everything(seed, runtime.deterministic)
    return device


def check_runtime_config(cfg) -> None:
    """The ``runtime`` section's values (``ConfigError`` naming the key)."""
    from robust_seg.config_checks import positive_int

    select_device(cfg.device)
    positive_int("runtime.threads", cfg.threads, optional=True)
    positive_int("runtime.num_workers", cfg.num_workers, minimum=0)
    check_processes(cfg.processes)


def seed_everything(seed: int, deterministic: bool = True) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def export_submitit_environment() -> None:
    """In a submitit job (Hydra's submitit launchers: SLURM or local) with several tasks and no torchrun
    variables, export the ``env://`` variables (MASTER_ADDR/PORT, RANK, WORLD_SIZE, LOCAL_RANK) that
    submitit derives from the job: one task per GPU then forms the DDP group as under torchrun."""
    if "WORLD_SIZE" in os.environ or "SUBMITIT_EXECUTOR" not in os.environ:
        return
    from submitit import JobEnvironment
    from submitit.helpers import TorchDistributedEnvironment

    if JobEnvironment().num_tasks > 1:
        TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def init_distributed(device_name: str) -> Distributed:
    """Join the process group that torchrun (or a multi-task submitit job) describes in the environment;
    no-op for a single process."""
    export_submitit_environment()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        use_cuda = device_name != "cpu" and torch.cuda.is_available()
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Distributed(rank=rank, world_size=world_size, local_rank=local_rank)


def shared_run_dir(run_dir: str | Path, distributed: Distributed) -> Path:
    """Every rank uses rank 0's run directory (Hydra resolves a time stamp on each rank)."""
    if distributed.enabled:
        holder = [str(run_dir)]
        dist.broadcast_object_list(holder, src=0)
        run_dir = holder[0]
    return Path(run_dir)


def hydra_run_dir() -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)
