#!/bin/bash
# A sensitivity sweep split across a Slurm cluster (docs/sharded-sweeps.md): a job array with one shard per
# SLURM_ARRAY_TASK_ID (0 to SHARDS-1), then a merge job that starts once every shard succeeded.
#
#   SHARDS=16 NET=... WEIGHTS=... DATA=... OUT=/shared/sweeps/vgg16 bash docs/slurm-sweep.sh
#
# run from a login node: it submits itself twice, as the array (`shard`) and as the dependent merge (`merge`).
# OUT must be on a file system every node sees. BUDGET=0.5 adds the --budget suggestion to the merge. A failed shard
# leaves no CSV: resubmit just that index (sbatch --array=I docs/slurm-sweep.sh shard), then the merge.
#
#SBATCH --job-name=caffe-prune-sweep
#SBATCH --cpus-per-task=8
#SBATCH --mem=48G
#SBATCH --time=2-00:00:00
#SBATCH --output=caffe-prune-sweep-%A_%a.out
set -euo pipefail

SHARDS=${SHARDS:-16}
NET=${NET:-/shared/models/vgg16/VGG_ILSVRC_16_layers_val.prototxt}
WEIGHTS=${WEIGHTS:-/shared/models/vgg16/VGG_ILSVRC_16_layers.caffemodel}
DATA=${DATA:-/shared/data/ilsvrc12_val_lmdb}
OUT=${OUT:-/shared/sweeps/vgg16}
THREADS=${SLURM_CPUS_PER_TASK:-8}
export SHARDS NET WEIGHTS DATA OUT

case "${1:-submit}" in
submit)
    mkdir -p "$OUT"
    array=$(sbatch --parsable --export=ALL --array=0-$((SHARDS - 1)) "$0" shard)
    sbatch --export=ALL --dependency=afterok:"$array" --kill-on-invalid-dep=yes "$0" merge
    ;;
shard)
    # The same sweep on every task (no --grid: every prunable layer at the tutorial's 5 keep fractions, 80 settings
    # for VGG16); --deterministic so that nodes with different CPUs give the same bits.
    caffe-prune sweep --net "$NET" --weights "$WEIGHTS" --data "$DATA" \
        --deterministic --threads "$THREADS" --quiet \
        --shard "$SLURM_ARRAY_TASK_ID/$SHARDS" --csv "$OUT/shard-$SLURM_ARRAY_TASK_ID.csv"
    ;;
merge)
    if [ -n "${BUDGET:-}" ]; then
        # --budget evaluates the suggested combination: it needs the net, weights and data again.
        caffe-prune sweep --merge "$OUT"/shard-*.csv --csv "$OUT/sweep.csv" --plot "$OUT/sweep.svg" \
            --budget "$BUDGET" --net "$NET" --weights "$WEIGHTS" --data "$DATA" \
            --deterministic --threads "$THREADS" --quiet
    else
        caffe-prune sweep --merge "$OUT"/shard-*.csv --csv "$OUT/sweep.csv" --plot "$OUT/sweep.svg"
    fi
    ;;
*)
    echo "usage: bash $0 [submit|shard|merge]" >&2
    exit 2
    ;;
esac
