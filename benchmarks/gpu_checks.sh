#!/usr/bin/env bash
# GPU checks of one device session, run from the repository root on a CUDA machine whose
# image has jax[cuda] (and numpy, scipy, matplotlib, tqdm, tensorstore): wheels carried
# in .whl/ are installed first (benchmarks/gpu_env.sh says how to make the folder).
#
#   bash benchmarks/gpu_checks.sh OUT_DIR [BUDGET_S]
#
# Stages, each under its own time limit so the script always reaches the end:
#   1. with SPECTRUM=1, benchmarks.spectrum_routines: eigenvalue / singular-value
#      routines for DSE (measured on an H200: spectrum_routines_gpu_NVIDIA_H200.md);
#   2. the active_matter experiment's paper preset (N = 4096 MIPS), run directory
#      runs/active_matter_gpu (kept, so a second call with RESUME=1 continues it);
#   3. benchmarks.bench_production and bench_score_training on the GPU.
# Everything that comes back is packed into OUT_DIR/gpu_checks.tgz (plus the log).
name=gpu_checks
modules="jax flax optax orbax.checkpoint"
# shellcheck source=benchmarks/gpu_env.sh
. benchmarks/gpu_env.sh "$@"

if [ "${RESUME:-0}" = 0 ]; then
  if [ "${SPECTRUM:-0}" = 1 ]; then
    echo "== spectrum_routines" >>"$log"
    timeout 60 python3 -m benchmarks.spectrum_routines --sizes 500 2000 --out "$stage" \
      >>"$log" 2>&1
  fi
  echo "== active_matter paper" >>"$log"
  resume=""
else
  echo "== active_matter paper (resumed)" >>"$log"
  resume="--resume"
fi
am_limit=$(( $(left) - ${BENCH_RESERVE:-110} ))
timeout "$am_limit" python3 -m experiments run active_matter --preset ${PRESET:-paper} \
  --out runs/active_matter_gpu $resume >"$stage/active_matter.log" 2>&1
echo "active_matter exit $? after $(( $(date +%s) - start )) s" >>"$log"
ls -l --time-style=+%T runs/active_matter_gpu/sim | tail -n +2 | awk '{print $6, $7}' >>"$log"
tr '\r' '\n' <"$stage/active_matter.log" | grep -v "^\s*$" | tail -n 60 >>"$log"
cp runs/active_matter_gpu/*.json runs/active_matter_gpu/*.md runs/active_matter_gpu/*.png \
  "$stage"/ 2>/dev/null
cp runs/active_matter_gpu/figures/*.png "$stage"/ 2>/dev/null

if [ "$(left)" -gt 40 ]; then
  echo "== bench_production, bench_score_training" >>"$log"
  timeout $(( $(left) - 15 )) python3 -m benchmarks --only production --only score_training \
    --out "$stage" >>"$log" 2>&1
  echo "bench_production, bench_score_training exit $?" >>"$log"
fi
tar czf "$out/gpu_checks.tgz" -C "$stage" . >>"$log" 2>&1
echo "done after $(( $(date +%s) - start )) s" >>"$log"
