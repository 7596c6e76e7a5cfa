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
import statistics
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
    parser.add_argument("--rounds", type=int, default=3,
                        help="pairs of runs, in alternating order (one process first, then torchrun first): the "
                             "machine's speed drifts during a run; the median efficiency is printed")
    args = parser.parse_args()
    overrides = ["logger=none", "attack=sea", "attack.eps=[8/255]", f"attack.options.iterations={args.iterations}",
                 f"max_images={args.images}", f"batch_size={args.batch_size}", f"runtime.device={args.device}",
                 f"runtime.threads={args.threads}"]
    print(f"SEA, {args.images} images, 4 losses x {args.iterations} iterations, batch {args.batch_size}, "
          f"{args.device}, {args.threads} thread(s) per process, {args.rounds} round(s)", flush=True)
    import torch  # to read the shards' state files

    whole, alone = [], []
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        for round_ in range(args.rounds):
            commands = {
                "one": [sys.executable, "-m", "robust_seg.evaluate", *overrides, f"run_name=one{round_}"],
                "many": [sys.executable, "-m", "torch.distributed.run", "--standalone",
                         f"--nproc_per_node={args.processes}", "-m", "robust_seg.evaluate", *overrides,
                         f"run_name=many{round_}"]}
            order = ("one", "many") if round_ % 2 == 0 else ("many", "one")
            seconds = {name: run(commands[name], work, args.threads) for name in order}
            outputs = work / "outputs" / "evaluate"
            results = {name: json.loads((outputs / f"{name}{round_}" / "results.json").read_text())
                       for name in order}
            acc = {name: r["radii"]["8/255"]["worst_case"]["acc"] for name, r in results.items()}
            if acc["one"] != acc["many"]:
                raise SystemExit(f"the runs disagree: ACC {acc['one']} vs {acc['many']}")
            shard_seconds = [torch.load(path, weights_only=True)["seconds"]
                             for path in (outputs / f"many{round_}" / "shards").glob("*/evaluation_state.pt")]
            whole.append(seconds["one"] / (args.processes * seconds["many"]))
            alone.append(results["one"]["seconds"] / (args.processes * max(shard_seconds)))
            print(f"round {round_ + 1}: 1 process {seconds['one']:.1f} s, {args.processes} processes "
                  f"{seconds['many']:.1f} s: whole commands {whole[-1]:.2f}; the evaluation alone "
                  f"{results['one']['seconds']:.1f} s vs shards {'/'.join(f'{s:.1f}' for s in sorted(shard_seconds))} s: "
                  f"{alone[-1]:.2f} "
                  f"(ACC {acc['one']:.2f} in both)", flush=True)
    print(f"scaling efficiency time_1 / ({args.processes} x time_{args.processes}), median of {args.rounds} "
          f"(range): whole commands (start-up, merge and reports included) {statistics.median(whole):.2f} "
          f"({min(whole):.2f}-{max(whole):.2f}); the evaluation alone (attack and diagnostics) "
          f"{statistics.median(alone):.2f} ({min(alone):.2f}-{max(alone):.2f}); fixed costs leave "
          f"{statistics.median(w / a for w, a in zip(whole, alone)):.2f} of the evaluation's scaling (whole / "
          f"evaluation, steadier than either when the machine's speed drifts)")


if __name__ == "__main__":
    main()
