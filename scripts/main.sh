#!/usr/bin/env bash
# The main job: the Batch Normalization paper's MNIST experiment (section 4.1) on
# Fashion-MNIST, on the CPU, and the paper's other claims as shorter measured runs.
#
#   bash scripts/main.sh                      # output in runs/main/
#   MAIN_OUT=/tmp/bn bash scripts/main.sh     # elsewhere
#   bash scripts/main.sh --steps 10000        # extra arguments go to models.paper_bn
#
# It sets up the environment (scripts/setup.sh), then trains 2 x 50,000 steps plus
# the sweeps in two processes, one BLAS thread each: a few minutes on two cores.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/setup.sh
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
OUT="${MAIN_OUT:-runs/main}"
JOBS="${MAIN_JOBS:-2}"
# One thread per process: the independent trainings run side by side instead.
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
start=$SECONDS
"$VENV/bin/python" -m models.paper_bn --out "$OUT" --jobs "$JOBS" "$@"
echo
echo "Finished in $((SECONDS - start)) s. Results in $OUT/:"
echo "  summary (accuracy table, percentiles, claims): $OUT/summary.md"
echo "  Figure 1 panels: $OUT/fig1a_test_accuracy.png, $OUT/fig1b_sigmoid_input_plain.png,"
echo "                   $OUT/fig1c_sigmoid_input_bn.png"
if [ -e "$OUT/claim_learning_rate.png" ]; then
    echo "  claims: $OUT/claim_learning_rate.png, $OUT/claim_weight_scale.png"
fi
echo "  BatchNorm graphs (composed and fused, forward and derivation): $OUT/graphs/"
echo "  metrics: $OUT/metrics.csv, $OUT/metrics.json, $OUT/percentiles.npz"
