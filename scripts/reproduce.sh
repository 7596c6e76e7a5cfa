#!/usr/bin/env bash
# Reproduce one paper table at full scale: print, then run, its Hydra multirun, then build the table.
#
#   scripts/reproduce.sh TABLE [extra Hydra overrides...]       e.g. scripts/reproduce.sh table1
#   scripts/reproduce.sh TABLE +scale=embedded                    the same grid on CPU in minutes (mechanics only)
#   DRY_RUN=1 scripts/reproduce.sh TABLE                           print the commands only
#
# TABLE: table1 table2 table3 table4 table7 table8 table9 figure2 thesis_5.1 thesis_5.2 thesis_6.2
#
# Needs (full scale; README.md, "Reproducing the papers" lists them per table):
#   ROBUST_SEG_DATA         datasets root (VOCdevkit/VOC2012, ADEChallengeData2016, cityscapes; default ./data);
#                           the thesis tables' targeted Cityscapes runs read cityscapes/thesis_target.png
#   ROBUST_SEG_OUTPUTS      where the training runs exported their models (default ./outputs):
#                           $ROBUST_SEG_OUTPUTS/train/train_<row>/model.pt from
#                           python -m robust_seg.train experiment=train_paper ... (docs/training.md)
#   ROBUST_SEG_CHECKPOINTS  third-party checkpoints (default ./checkpoints): DDC-AT / AT of Xu et al.,
#                           the clean UPerNet ConvNeXt-T, MMSeg model-zoo weights for the thesis tables
#   a CUDA GPU (runtime.device=auto picks it). Results land in outputs/evaluate/multirun/<experiment>
#   ($ROBUST_SEG_RESULTS instead of outputs when set; a second run of a grid there needs resume=true);
#   a killed grid continues with `resume=true` (finished jobs are kept, the unfinished one resumes).
#
# Expected wall time on one A100-class GPU: estimates at about 12 ms per image and attack iteration for
# UPerNet + ConvNeXt-T at 512x512, from the one GPU measurement of the README (an H100: a forward+backward of a
# batch of 8 in 65 ms, about 8 ms per image) scaled to the A100's lower throughput; the tables themselves were not
# timed. SEA skips images already at 0% accuracy, so robust models cost more than non-robust ones.
#   table1      ~50 h    2 models x 4 attacks (SEA = 4 x 300 iterations) x 3 radii, 1449 VOC images
#   table2      ~25 h    2 models x 6 losses x 100 iterations x 4 radii
#   table3      ~220 h   11 models x SEA at 3 radii (+ clean)
#   table4      ~300 h   14 models x SEA at 3 radii (6 models shared with table3: reuse with resume)
#   table7      ~8 h     4 attacks x 100 iterations x 4 radii, one model
#   table8      ~40 h    2 models x (6 + 4) losses x 100 iterations x 4 radii
#   table9      ~100 h   4 models x 4 losses x 300 iterations x 3-4 radii (every loss on every image)
#   figure2     ~35 h    3 schedules x 4 losses x 300 iterations x 2 radii, one model
#   thesis_5.1  ~400-1000 h  4 models x 11 attacks x 2 scenarios x 500 iterations (Cityscapes at 2048x1024:
#                        ~24 h per attack and scenario)
#   thesis_5.2  ~150 h   2 models x 5 attacks x 2 scenarios x 500 iterations
#   thesis_6.2  <1 h     6 clean evaluations with calibration metrics (training: configs/experiment/cals_*)
set -euo pipefail
cd "$(dirname "$0")/.."

tables=robust_seg/reporting/paper_tables  # one data file per table: its experiment, rows and published numbers
if [[ $# -lt 1 || ! -f "$tables/${1}.yaml" ]]; then
  echo "usage: $0 TABLE [Hydra overrides...]; TABLE one of: $(ls $tables | sed 's/\.yaml$//' | tr '\n' ' ')" >&2
  exit 2
fi
table=$1
shift
experiment=$(sed -n 's/^experiment: *//p' "$tables/$table.yaml")
suffix=""
for override in "$@"; do [[ $override == "+scale=embedded" ]] && suffix="_embedded"; done
sweep_dir=${ROBUST_SEG_RESULTS:-outputs}/evaluate/multirun/${experiment}${suffix}
python=${PYTHON:-.venv/bin/python}

run=("$python" -m robust_seg.evaluate -m "experiment=$experiment" "hydra.sweep.dir=$sweep_dir" "$@")
build=("$python" scripts/make_table.py "$table" "$sweep_dir")
echo "+ ${run[*]}"
echo "+ ${build[*]}"
[[ -n "${DRY_RUN:-}" ]] && exit 0
status=0
"${run[@]}" || status=$?
# Build the table even when some jobs failed: their cells show as gaps with the reason.
"${build[@]}" | tee "$sweep_dir/table.md"
exit $status
