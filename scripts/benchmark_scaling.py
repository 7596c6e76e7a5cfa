"""Scaling of a sharded SEA evaluation: one process vs two (or more) processes, under torchrun and with
``runtime.processes`` (torchrun's launch with forked workers, robust_seg/run/launch.py).

Runs the same evaluation (shipped model, synthetic data) with one process and with ``--processes`` processes
launched both ways (CPU: ``--threads`` threads each; with GPUs, one GPU each) and prints the wall-clock times of
the whole commands and the scaling efficiency time_1 / (P x time_P). All runs' ACC must agree (checked). The
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
                        help="rounds of the three commands, each command first in turn: the machine's speed drifts "
                             "during a run; the median efficiency is printed")
    args = parser.parse_args()
    overrides = ["logger=none", "attack=sea", "attack.eps=[8/255]", f"attack.options.iterations={args.iterations}",
                 f"max_images={args.images}", f"batch_size={args.batch_size}", f"runtime.device={args.device}",
                 f"runtime.threads={args.threads}"]
    print(f"SEA, {args.images} images, 4 losses x {args.iterations} iterations, batch {args.batch_size}, "
          f"{args.device}, {args.threads} thread(s) per process, {args.rounds} round(s)", flush=True)
    import torch  # to read the shards' state files

    launchers = {"torchrun": "torchrun --nproc_per_node", "processes": "runtime.processes"}
    whole: dict[str, list[float]] = {name: [] for name in launchers}
    alone: dict[str, list[float]] = {name: [] for name in launchers}
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        for round_ in range(args.rounds):
            commands = {
                "one": [sys.executable, "-m", "robust_seg.evaluate", *overrides, f"run_name=one{round_}"],
                "torchrun": [sys.executable, "-m", "torch.distributed.run", "--standalone",
                             f"--nproc_per_node={args.processes}", "-m", "robust_seg.evaluate", *overrides,
                             f"run_name=torchrun{round_}"],
                "processes": [sys.executable, "-m", "robust_seg.evaluate", *overrides,
                              f"runtime.processes={args.processes}", f"run_name=processes{round_}"]}
            order = list(commands)[round_ % 3:] + list(commands)[:round_ % 3]  # each command first in turn
            seconds = {name: run(commands[name], work, args.threads) for name in order}
            outputs = work / "outputs" / "evaluate"
            results = {name: json.loads((outputs / f"{name}{round_}" / "results.json").read_text())
                       for name in order}
            acc = {name: r["radii"]["8/255"]["worst_case"]["acc"] for name, r in results.items()}
            if len(set(acc.values())) != 1:
                raise SystemExit(f"the runs disagree: ACC {acc}")
            line = [f"round {round_ + 1}: 1 process {seconds['one']:.1f} s "
                    f"(evaluation {results['one']['seconds']:.1f} s)"]
            for name, how in launchers.items():
                shard_seconds = [torch.load(path, weights_only=True)["seconds"]
                                 for path in (outputs / f"{name}{round_}" / "shards").glob("*/evaluation_state.pt")]
                whole[name].append(seconds["one"] / (args.processes * seconds[name]))
                alone[name].append(results["one"]["seconds"] / (args.processes * max(shard_seconds)))
                shards = "/".join(f"{s:.1f}" for s in sorted(shard_seconds))
                line.append(f"{how} {seconds[name]:.1f} s (shards {shards} s): whole {whole[name][-1]:.2f}, "
                            f"evaluation {alone[name][-1]:.2f}")
            print("; ".join(line) + f" (ACC {acc['one']:.2f} in all)", flush=True)
    print(f"scaling efficiency time_1 / ({args.processes} x time_{args.processes}), median of {args.rounds} (range):")
    for name, how in launchers.items():
        print(f"  {how}: whole commands (start-up, merge and reports included) {statistics.median(whole[name]):.2f} "
              f"({min(whole[name]):.2f}-{max(whole[name]):.2f}); the evaluation alone (attack and diagnostics) "
              f"{statistics.median(alone[name]):.2f} ({min(alone[name]):.2f}-{max(alone[name]):.2f}); fixed costs "
              f"leave {statistics.median(w / a for w, a in zip(whole[name], alone[name])):.2f} of the evaluation's "
              f"scaling (whole / evaluation, steadier than either when the machine's speed drifts)")


if __name__ == "__main__":
    main()
