#!/usr/bin/env bash
# GPU checks of one device session, run from the repository root on a CUDA machine whose
# image has jax[cuda] (and numpy, scipy, matplotlib, tqdm, tensorstore): the pinned
# pure-Python wheels of flax, optax, chex and orbax-checkpoint may be placed in .whl/
# (pip download --no-deps -d .whl ...) so the same versions as requirements.txt run.
#
#   bash benchmarks/gpu_checks.sh OUT_DIR [BUDGET_S]
#
# Stages, each under its own time limit so the script always reaches the end:
#   1. benchmarks.spectrum_routines: eigenvalue / singular-value routines for DSE;
#   2. the active_matter experiment's paper preset (N = 4096 MIPS), run directory
#      runs/active_matter_gpu (kept, so a second call with RESUME=1 continues it);
#   3. benchmarks.bench_production on the GPU.
# Everything that comes back is packed into OUT_DIR/gpu_checks.tgz (plus the log).
set -u
out=${1:?usage: gpu_checks.sh OUT_DIR [BUDGET_S]}
budget=${2:-560}
start=$(date +%s)
export PYTHONUNBUFFERED=1 JAX_PLATFORMS=${JAX_PLATFORMS:-cuda}
stage=$(mktemp -d)
log=$out/gpu_checks.log
mkdir -p "$out"
left() { echo $(( budget - ($(date +%s) - start) )); }

if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import jax, flax, optax, orbax.checkpoint as o; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())"
} >>"$log" 2>&1

if [ "${RESUME:-0}" = 0 ]; then
  echo "== spectrum_routines" >>"$log"
  timeout 60 python3 -m benchmarks.spectrum_routines --sizes 500 2000 --out "$stage" >>"$log" 2>&1
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
  echo "== bench_production" >>"$log"
  timeout $(( $(left) - 15 )) python3 -m benchmarks --only production --out "$stage" >>"$log" 2>&1
  echo "bench_production exit $?" >>"$log"
fi
tar czf "$out/gpu_checks.tgz" -C "$stage" . >>"$log" 2>&1
echo "done after $(( $(date +%s) - start )) s" >>"$log"
