#!/usr/bin/env bash
# Sourced as `. benchmarks/gpu_env.sh "$@"` by benchmarks/gpu_*.sh, which set `name`
# (the script's name) and `modules` (whose versions to log) first; the arguments are
# OUT_DIR [BUDGET_S]. For a device machine whose image has jax[cuda], numpy, scipy,
# matplotlib, tqdm and tensorstore but not the rest of requirements.txt. Sets out,
# budget, start, stage (a scratch folder packed into $out/$name.tgz at the end), log
# ($out/$name.log) and left() (seconds of the budget left), and writes the card and the
# modules' versions into the log. Wheels
# carried in .whl/ (Python 3.12, manylinux x86_64) are installed into /tmp/site, which
# goes first on PYTHONPATH: the pinned packages always (so the versions of
# requirements.txt run), every other wheel only when the image lacks that distribution.
# Make the folder here with:
#
#   pip download --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 \
#     --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
#     --platform manylinux2014_x86_64 -d .whl flax==0.12.8 optax==0.2.8 chex==0.1.92 \
#     orbax-checkpoint==0.12.8 [brax==0.14.2 mujoco==4.0.0 mujoco-mjx==3.17.0]
#   rm .whl/{jax,jaxlib,numpy,scipy,tensorstore,ml_dtypes}-*   # the image has these
#
# (the device tool carries at most 64 MiB: check the folder's size).
set -u
out=${1:?usage: $name.sh OUT_DIR [BUDGET_S]}
budget=${2:-560}
start=$(date +%s)
export PYTHONUNBUFFERED=1 JAX_PLATFORMS=${JAX_PLATFORMS:-cuda}
stage=$(mktemp -d)
log=$out/$name.log
mkdir -p "$out"
left() { echo $(( budget - ($(date +%s) - start) )); }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >>"$log" 2>&1

PINNED="flax optax chex orbax_checkpoint brax mujoco mujoco_mjx mujoco_core mujoco_studio"
if ls .whl/*.whl >/dev/null 2>&1; then
  wheels=$(PINNED="$PINNED" python3 - <<'PY'
import glob, importlib.metadata as md, os
pinned = set(os.environ["PINNED"].split())
for path in sorted(glob.glob(".whl/*.whl")):
  dist = os.path.basename(path).split("-")[0]
  if dist.lower() in pinned:
    print(path)
    continue
  try:
    md.version(dist)
  except md.PackageNotFoundError:
    print(path)
PY
)
  # shellcheck disable=SC2086
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site $wheels && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
python3 -c "import importlib, sys, jax
for m in sys.argv[1:]:
  print(m, getattr(importlib.import_module(m), '__version__', '?'))
print(jax.devices())" $modules >>"$log" 2>&1
