#!/usr/bin/env bash
# Every channel of every block of a model, as a SLURM job array: one shard per array task.
#
#   sbatch --array=0-15 examples/slurm_array.sh               # 16 shards, one GPU each
#   sbatch --array=0-15%4 examples/slurm_array.sh             # at most 4 running at once
#   MODEL=resnet50 OUT=/scratch/$USER/resnet50 sbatch --array=0-31 examples/slurm_array.sh
#
# Each task reads its shard from SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT (featvis.shard), renders
# every 16th batch of the job into $OUT, and keeps its own record in $OUT/parts/. The last task to
# finish merges $OUT/manifest.json and the sheets. A task that failed or was pre-empted: resubmit
# the same array (or just its index, e.g. --array=7); finished batches are skipped. Check with
#   featvis merge $OUT        # exit 0: complete; 3: lists the missing units by shard
# How many tasks to ask for: featvis plan $MODEL --layers blocks --steps $STEPS --batch $BATCH
#
#SBATCH --job-name=featvis
#SBATCH --gpus=1
#SBATCH --cpus-per-task=4
#SBATCH --time=04:00:00
#SBATCH --output=featvis-%A_%a.out
#SBATCH --requeue
set -euo pipefail

MODEL=${MODEL:-inceptionv1}
LAYERS=${LAYERS:---layers blocks}        # or layer names: "mixed4a mixed4b"
CHANNELS=${CHANNELS:-all}
STEPS=${STEPS:-512}
SIZE=${SIZE:-128}
BATCH=${BATCH:-64}                       # every task must use the same batch (so no "auto")
OUT=${OUT:-renders-$MODEL}
PYTHON=${PYTHON:-python3}

# shellcheck disable=SC2086  # LAYERS and EXTRA are lists of words
exec "$PYTHON" -m featvis render "$MODEL" $LAYERS --channels "$CHANNELS" --steps "$STEPS" --size "$SIZE" \
    --batch "$BATCH" --out "$OUT" ${EXTRA:-}
