"""Scaling of a sharded SEA evaluation: one process vs torchrun with two (or more) processes.

Runs the same evaluation (shipped model, synthetic data) with one process and with ``--processes`` processes
under ``torchrun`` (CPU: ``--threads`` threads each; with GPUs, one GPU each) and prints the wall-clock times of
the whole commands and the scaling efficiency time_1 / (P x time_P). Both runs' ACC must agree (checked). The
default size is the README's main job at one radius (64 images, 4 losses x 50 iterations, batches of 32, 8/255).

    .venv/bin/python scripts/benchmark_scaling.py                     # 2 processes x 1 thread, CPU
    .venv/bin/python scripts/benchmark_scaling.py --device cuda --processes 4
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(command: list[str], cwd: Path, threads: int) -> float:
    env = dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS=str(threads), PYTHONPATH=str(ROOT))
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if completed.returncode != 0:
        raise SystemExit(f"command failed: {' '.join(command)}\n{completed.stderr[-2000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="threads per process (CPU)")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=50, help="APGD iterations per loss")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    overrides = ["logger=none", "attack=sea", "attack.eps=[8/255]", f"attack.options.iterations={args.iterations}",
                 f"max_images={args.images}", f"batch_size={args.batch_size}", f"runtime.device={args.device}",
                 f"runtime.threads={args.threads}"]
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        single = run([sys.executable, "-m", "robust_seg.evaluate", *overrides, "run_name=one"], work, args.threads)
        multi = run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                     f"--nproc_per_node={args.processes}", "-m", "robust_seg.evaluate", *overrides, "run_name=many"],
                    work, args.threads)
        results = [json.loads((work / "outputs" / "evaluate" / name / "results.json").read_text())
                   for name in ("one", "many")]
        import torch

        shard_seconds = [torch.load(path, weights_only=True)["seconds"]
                         for path in (work / "outputs" / "evaluate" / "many" / "shards").glob("*/evaluation_state.pt")]
    acc = [r["radii"]["8/255"]["worst_case"]["acc"] for r in results]
    if acc[0] != acc[1]:
        raise SystemExit(f"the runs disagree: ACC {acc[0]} vs {acc[1]}")
    print(f"SEA, {args.images} images, 4 losses x {args.iterations} iterations, batch {args.batch_size}, "
          f"{args.device}, {args.threads} thread(s) per process")
    print(f"1 process: {single:.1f} s; {args.processes} processes: {multi:.1f} s (whole commands, start-up included)")
    print(f"scaling efficiency time_1 / ({args.processes} x time_{args.processes}) = "
          f"{single / (args.processes * multi):.2f}  (ACC {acc[0]:.2f} in both)")
    own = results[0]["seconds"]
    print(f"the evaluation alone (attack and diagnostics time, without start-up, model building and reports): "
          f"1 process {own:.1f} s, slowest of {args.processes} shards {max(shard_seconds):.1f} s, efficiency "
          f"{own / (args.processes * max(shard_seconds)):.2f}")


if __name__ == "__main__":
    main()
