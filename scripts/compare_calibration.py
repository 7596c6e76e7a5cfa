"""Thesis Table 6.2 on the synthetic dataset: train CE / LS / FL / ECP / MbLS / CALS-HR / CALS-ALM with an equal
budget, evaluate each with calibration metrics (clean, and optionally under APGD), print the table.

    .venv/bin/python scripts/compare_calibration.py                    # the table of docs/calibration.md
    .venv/bin/python scripts/compare_calibration.py --epochs 3 --train-images 16 --methods ce cals_alm
    .venv/bin/python scripts/compare_calibration.py --methods cals_alm --train-override scheme.loss.rho_rule=official

Setting (configs/experiment/cals_synthetic.yaml, cals_synthetic_eval.yaml): the small UPerNet-ConvNeXt on few
synthetic training images for many epochs, so that CE over-fits and becomes over-confident. Equal budget, as the
thesis' protocol (Appendix V.2): every loss trains on the same images -- the same 80% of a training split of
``train_images / 0.8`` images -- for the same epochs, batch size, schedule and data order; the 20% held out
(``split_train_validation``, seed 0) serve the CALS losses for their multipliers and nobody for training.

By default the training loop holds images out only for the CALS losses; a baseline would then train on all
``train_images / 0.8`` images, i.e. on other images than CALS, and that difference in data (measured: 6.8
points of accuracy) swamps the effect of the losses. The script therefore trains every loss with
``scheme.hold_out_validation=true``.

Every model is evaluated clean and under APGD with the calibration metrics, and with post-hoc temperature
scaling fitted on the held-out images (valid here: no loss trained on them); the tables are printed and written to
``--out``/table.md.

Training runs in a worker subprocess (``--train-worker``: the training loop in-process), the
evaluation through the real entry point (``python -m robust_seg.evaluate``); a method whose exported model
exists in ``--out`` is not retrained (rerun to finish an interrupted comparison).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = {"ce": "CE", "ecp": "ECP", "ls": "LS", "fl": "FL", "mbls": "MbLS", "cals_hr": "CALS-HR",
           "cals_alm": "CALS-ALM"}
VALIDATION_FRACTION = 0.2


def training_split_size(train_images: int) -> int:
    """Size of the training split whose part not held out has ``train_images`` images (module doc)."""
    return round(train_images / (1 - VALIDATION_FRACTION))


HOLD_OUT = "scheme.hold_out_validation=true"
"""Every loss trains on the same images (module doc)."""


def train_worker(overrides: list[str], run_dir: str) -> None:
    """``--train-worker``: compose the train config from ``overrides`` and run the training loop in-process."""
    from hydra import compose, initialize_config_dir

    from robust_seg.run.config import register_configs
    from robust_seg.training.config import TrainConfig
    from robust_seg.training import train

    register_configs(train=TrainConfig)
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    train(cfg, run_dir)


def run(command: list[str], log_path: Path) -> float:
    """Run ``python <command>``, its output into ``log_path``; return its wall time; fail loudly."""
    env = dict(os.environ, WANDB_MODE="disabled", PYTHONPATH=str(ROOT))
    started = time.perf_counter()
    with open(log_path, "w") as log:
        completed = subprocess.run([sys.executable, *command], cwd=ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
    if completed.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed; see {log_path}")
    return time.perf_counter() - started


def train_and_evaluate(method: str, args) -> dict:
    out = args.out / method
    out.mkdir(parents=True, exist_ok=True)
    model_path = out / "model.pt"
    common = [f"runtime.threads={args.threads}", f"seed={args.seed}"]
    seconds = {}
    if not model_path.exists():
        seconds["train"] = run([__file__, "--train-worker", str(out / "train"), "logger=none",
                                "experiment=cals_synthetic", f"scheme={method}", HOLD_OUT,
                                f"dataset.synthetic.num_train={training_split_size(args.train_images)}",
                                f"schedule.epochs={args.epochs}", f"export_path={model_path}", *common,
                                *args.train_override],
                               out / "train.log")
    # T fitted on the held-out images (unseen by every loss): the evaluation's training split is the runs' one
    evaluate = ["experiment=cals_synthetic_eval", f"model.checkpoint={model_path}", "calibration_temperature=fit",
                f"dataset.synthetic.num_train={training_split_size(args.train_images)}",
                f"calibration_holdout_seed={args.seed}", f"dataset.synthetic.num_val={args.val_images}",
                f"hydra.run.dir={out / 'evaluate'}", *common]
    if args.attack_eps:
        evaluate += ["attack=apgd", f"attack.eps=[0,{args.attack_eps}]", f"attack.options.iterations={args.attack_iterations}"]
    results_path = out / "evaluate" / "results.json"
    if results_path.exists():
        results_path.unlink()
        (out / "evaluate" / "evaluation_state.pt").unlink(missing_ok=True)
        (out / "evaluate" / "batches.jsonl").unlink(missing_ok=True)
    seconds["evaluate"] = run(["-m", "robust_seg.evaluate", *evaluate], out / "evaluate.log")
    results = json.loads(results_path.read_text())
    history = json.loads((out / "train" / "train_results.json").read_text())["history"] \
        if (out / "train" / "train_results.json").exists() else []
    return {"method": method, "results": results, "seconds": seconds,
            "multipliers": [h["multipliers"] for h in history if "multipliers" in h]}


def table(rows: list[dict]) -> str:
    """Thesis Table 6.2 layout, one row per loss: ACC, mIoU and the calibration metrics (%; NLL in nats) at eps 0."""
    lines = ["| Loss | ACC | mIoU | ECE | AECE | CWCE | NLL | ECE (image mean) | AECE (image mean) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        clean = row["results"]["radii"]["0"]["worst_case"]
        metrics = row["results"]["calibration"]["radii"]["0"]["T=1"]
        lines.append(f"| {METHODS[row['method']]} | {clean['acc']:.2f} | {clean['miou']:.2f} | "
                     f"{100 * metrics['ece_dataset']:.2f} | {100 * metrics['aece_dataset']:.2f} | "
                     f"{100 * metrics['cwce_dataset']:.2f} | {metrics['nll_dataset']:.3f} | "
                     f"{100 * metrics['ece_image_mean']:.2f} | {100 * metrics['aece_image_mean']:.2f} |")
    return "\n".join(lines)


def temperature_table(rows: list[dict]) -> str:
    """Thesis Table V-1 layout at eps 0: ECE (%) before and after temperature scaling, with the fitted T."""
    from robust_seg.metrics.temperature import temperature_scaling_table

    entries = {}
    for row in rows:
        entry = row["results"]["calibration"]["radii"]["0"]
        entries[METHODS[row["method"]]] = (entry["T=1"], entry["temperature_scaled"],
                                           entry["temperature_scaled"]["temperature"])
    return temperature_scaling_table(entries, "ece_dataset")


def attacked_table(rows: list[dict], key: str) -> str:
    """ACC / ECE / NLL on the worst-case APGD images at radius ``key`` (ECE under attack)."""
    lines = [f"| Loss | ACC @ {key} | mIoU @ {key} | ECE @ {key} | AECE @ {key} | NLL @ {key} |",
             "|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        attacked = row["results"]["radii"][key]["worst_case"]
        metrics = row["results"]["calibration"]["radii"][key]["T=1"]
        lines.append(f"| {METHODS[row['method']]} | {attacked['acc']:.2f} | {attacked['miou']:.2f} | "
                     f"{100 * metrics['ece_dataset']:.2f} | {100 * metrics['aece_dataset']:.2f} | "
                     f"{metrics['nll_dataset']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    if sys.argv[1:2] == ["--train-worker"]:
        train_worker(sys.argv[3:], sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--train-images", type=int, default=64, help="training images of every method")
    parser.add_argument("--val-images", type=int, default=128, help="evaluation images (synthetic val split)")
    parser.add_argument("--attack-eps", default="1/255", help="also evaluate under APGD at this radius ('' = no)")
    parser.add_argument("--attack-iterations", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=2, help="methods trained at the same time")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-override", action="append", default=[],
                        help="extra training override, e.g. scheme.loss.rho_rule=official (repeatable)")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "compare_calibration")
    args = parser.parse_args()
    started = time.perf_counter()
    # CE and CALS-ALM first: the pair the issue asks about
    methods = sorted(args.methods, key=lambda m: (m not in ("ce", "cals_alm"), list(METHODS).index(m)))
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda method: train_and_evaluate(method, args), methods))
    order = list(METHODS)
    rows.sort(key=lambda row: order.index(row["method"]))
    text = [f"Synthetic dataset, small_upernet_convnext, {args.train_images} training images per method, "
            f"{args.epochs} epochs, seed {args.seed}, {args.val_images} val images; values in % (NLL in nats), "
            "dataset-level unless marked image mean.", "", table(rows)]
    text += ["", "Post-hoc temperature scaling, T fitted on the held-out images (thesis Table V-1 layout; "
             "dataset-level ECE in %, eps 0):", "", temperature_table(rows)]
    if args.attack_eps:
        key = next(k for k in rows[0]["results"]["radii"] if k != "0")
        text += ["", f"Under APGD (Mask-CE, red-eps, {args.attack_iterations} iterations) at eps {key}:", "",
                 attacked_table(rows, key)]
    text += ["", "Wall time per method (s): " + ", ".join(
        f"{METHODS[r['method']]} " + "/".join(f"{v:.0f}" for v in r["seconds"].values()) for r in rows),
        f"Total: {time.perf_counter() - started:.0f} s"]
    print("\n".join(text))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text("\n".join(text) + "\n")
    (args.out / "summary.json").write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()
