#!/usr/bin/env bash
# QARL on a CUDA device, run from the repository root (one device session; wheels carried
# in .whl/ with brax, mujoco and mujoco-mjx: see benchmarks/gpu_env.sh).
#
#   bash benchmarks/gpu_qarl.sh OUT_DIR [BUDGET_S]
#
# Stages, each under its own time limit so the script always reaches the end:
#   1. tests/rl on the GPU (not the slow ones);
#   2. benchmarks.bench_qarl on the GPU (issue 6: "when a GPU is available, measure the
#      same and record it with the card named");
#   3. the qarl experiment's paper preset on halfcheetah (all four modes, 5 seeds each),
#      run directory runs/qarl_gpu, checkpointed every 10 iterations: a second call with
#      RESUME=1 on the still-warm machine continues it. (The checkpoints hold the replay
#      buffers, 10^6 transitions per seed, far beyond what a call can carry, so a run
#      does not continue in another session.) Its progress bar gives env steps/s.
# Everything that comes back is packed into OUT_DIR/gpu_qarl.tgz (plus the log).
name=gpu_qarl
modules="jax flax brax mujoco mujoco.mjx"
# shellcheck source=benchmarks/gpu_env.sh
. benchmarks/gpu_env.sh "$@"

if [ "${RESUME:-0}" = 0 ]; then
  echo "== tests/rl" >>"$log"
  timeout "${TEST_LIMIT:-150}" python3 -m pytest tests/rl -q -x -m "not slow" \
    -p no:cacheprovider >>"$log" 2>&1
  echo "tests/rl exit $?" >>"$log"
  echo "== bench_qarl" >>"$log"
  timeout "${BENCH_LIMIT:-150}" python3 -m benchmarks --only qarl --out "$stage" >>"$log" 2>&1
  echo "bench_qarl exit $?" >>"$log"
  resume=""
else
  resume="--resume"
fi
if [ "$(left)" -gt 40 ]; then
  echo "== qarl paper (halfcheetah)${resume:+, resumed}" >>"$log"
  timeout $(( $(left) - 15 )) python3 -m experiments run qarl --preset paper \
    --set envs=halfcheetah --out runs/qarl_gpu $resume >"$stage/qarl.log" 2>&1
  echo "qarl exit $? after $(( $(date +%s) - start )) s" >>"$log"
  tr '\r' '\n' <"$stage/qarl.log" | grep -v "^\s*$" | tail -n 40 >>"$log"
  cp runs/qarl_gpu/*.json runs/qarl_gpu/*.md runs/qarl_gpu/figures/*.png "$stage"/ 2>/dev/null
fi
tar czf "$out/gpu_qarl.tgz" -C "$stage" . >>"$log" 2>&1
echo "done after $(( $(date +%s) - start )) s" >>"$log"
