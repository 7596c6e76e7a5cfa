#!/usr/bin/env bash
# The SEA paper's PIR-AT finding (Sec. 3, Table 4) in miniature, on the synthetic data, on CPU:
#   1. pre-train the small ConvNeXt backbone as a classifier on a synthetic classification task
#      (robust_seg/training/pretraining.py), cleanly and with PGD AT (the stand-ins for the clean and
#      the robust ImageNet classifiers of Table 6);
#   2. train small_upernet_convnext with 2-step AT from the clean backbone (AT) and from the robust
#      one (PIR-AT): same data, schedule and budget, only model.backbone_init differs;
#   3. evaluate both with SEA and print a Markdown table (also written to $OUT/table.md).
# Usage: scripts/demo_pirat.sh [OUT_DIR]   (default outputs/demo_pirat; 12.5 min measured on 2 shared cores)
# Knobs (environment): PRETRAIN_IMAGES, PRETRAIN_EPOCHS, TRAIN_EPOCHS, TRAIN_IMAGES, SEA_ITERATIONS, SEA_IMAGES, THREADS.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${1:-outputs/demo_pirat}
NAME=$(basename "$OUT")  # prefix of the run names under outputs/{pretrain,train,evaluate}
PRETRAIN_IMAGES=${PRETRAIN_IMAGES:-2048}
PRETRAIN_EPOCHS=${PRETRAIN_EPOCHS:-20}
TRAIN_EPOCHS=${TRAIN_EPOCHS:-6}
TRAIN_IMAGES=${TRAIN_IMAGES:-512}
SEA_ITERATIONS=${SEA_ITERATIONS:-20}
SEA_IMAGES=${SEA_IMAGES:-32}
THREADS=${THREADS:-1}
export WANDB_MODE=${WANDB_MODE:-disabled}
mkdir -p "$OUT"
started=$(date +%s)

for init in clean robust; do
  adversarial=null
  [ "$init" = robust ] && adversarial='${robust_preset}'
  [ -f "$OUT/backbone_$init.pt" ] || "$PYTHON" -m robust_seg.pretrain "run_name=${NAME}_$init" \
      epochs="$PRETRAIN_EPOCHS" dataset.synthetic.num_train="$PRETRAIN_IMAGES" "adversarial=$adversarial" threads="$THREADS" \
      output="$OUT/backbone_$init.pt"
done

declare -A scheme=([clean]=at [robust]=pirat)
for init in clean robust; do
  name=${scheme[$init]}
  [ -f "$OUT/model_$name.pt" ] || "$PYTHON" -m robust_seg.train "run_name=${NAME}_$name" logger=none \
      scheme=at scheme.adversarial.steps=2 batch_size=16 dataset.synthetic.num_train="$TRAIN_IMAGES" \
      optimizer.name=adamw optimizer.lr=2e-3 optimizer.weight_decay=1e-2 \
      schedule.epochs="$TRAIN_EPOCHS" schedule.warmup_epochs=1 schedule.power=1.0 \
      robust_eval.max_images=32 eval_every="$TRAIN_EPOCHS" runtime.threads="$THREADS" \
      model.backbone_init="$init" model.backbone_format=mmseg \
      "+model.backbone_checkpoints.$init=$OUT/backbone_$init.pt" export_path="$OUT/model_$name.pt"
done

for name in at pirat; do
  [ -f "outputs/evaluate/${NAME}_sea_$name/results.json" ] || "$PYTHON" -m robust_seg.evaluate \
      "run_name=${NAME}_sea_$name" logger=none attack=sea "attack.eps=[0,4/255,8/255]" \
      attack.options.iterations="$SEA_ITERATIONS" max_images="$SEA_IMAGES" batch_size=32 \
      runtime.threads="$THREADS" model.checkpoint="$OUT/model_$name.pt"
done

"$PYTHON" - "$OUT" "$NAME" "$SEA_ITERATIONS" "$SEA_IMAGES" "$(( $(date +%s) - started ))" <<'PY'
import json, sys
from pathlib import Path

out, name_prefix, iterations, images, seconds = sys.argv[1:]
rows = []
for name, label, init in [("at", "AT", "clean"), ("pirat", "PIR-AT", "robust")]:
    backbone = json.loads(Path(f"outputs/pretrain/{name_prefix}_{init}/pretrain_results.json").read_text())["final"]
    results = json.loads(Path(f"outputs/evaluate/{name_prefix}_sea_{name}/results.json").read_text())
    cells = [f"{r['worst_case']['acc']:.1f} / {r['worst_case']['miou']:.1f}" for r in results["radii"].values()]
    radii = list(results["radii"])
    rows.append(f"| {label} | {init} ({backbone['val_acc']:.0f}% clean, {backbone.get('robust_acc', 0):.0f}% PGD) | 2 | "
                + " | ".join(cells) + " |")
header = ("| Training | Backbone init (classifier acc.) | Steps | " + " | ".join(f"eps {r}: ACC / mIoU" for r in radii)
          + " |\n|" + "---|" * (3 + len(radii)))
table = "\n".join([header, *rows])
note = (f"\nSEA ({iterations} iterations per loss) on the first {images} synthetic validation images; "
        f"whole demonstration {int(seconds) // 60} min {int(seconds) % 60} s.\n")
Path(out, "table.md").write_text(table + "\n" + note)
print(table + "\n" + note)
PY
