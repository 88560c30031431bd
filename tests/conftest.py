"""Test-wide setup: four virtual CPU devices, so sharded paths run on one machine, flags
that make XLA compile faster, and one compilation cache for the session."""

import atexit
import os
import shutil
import tempfile

# XLA:CPU's older per-op emitters instead of the MLIR fusion emitters (suite_xla_flags).
LEGACY_EMITTERS = "--xla_cpu_use_fusion_emitters=false"


def _jaxlib_version() -> tuple[int, ...]:
  from importlib import metadata
  try:
    return tuple(int(p) for p in metadata.version("jaxlib").split(".")[:2])
  except (metadata.PackageNotFoundError, ValueError):
    return ()


def suite_xla_flags(flags: str, jaxlib: tuple[int, ...], legacy_emitters: bool = True) -> str:
  """``flags`` with the suite's compile-time flags added where ``flags`` does not set
  them already: four virtual CPU devices; LLVM's optimisation off; and on jaxlib 0.10
  (pinned in requirements.txt, where the flag exists: later XLA retires it, and an
  unknown flag aborts the process) the older per-op code emitters instead of the MLIR
  fusion emitters: the suite spends most of its time compiling, and both make that
  faster. What a test checks does not depend on them, with one exception found: the
  QARL experiment's training program, compiled this way, gets a NaN critic loss from
  one of its vmapped adversary SAC updates on a finite batch (it does not with either
  flag alone, nor does ``sac_update`` compiled alone), so
  tests/experiments/test_qarl.py runs it in a subprocess without the emitter flag.
  ``ENTROPYLAB_TEST_LEGACY_EMITTERS=0`` leaves the emitters alone for a whole run."""
  wanted = ["--xla_force_host_platform_device_count=4", "--xla_backend_optimization_level=0"]
  if legacy_emitters and jaxlib[:2] == (0, 10):
    wanted.append(LEGACY_EMITTERS)
  present = {f.split("=")[0] for f in flags.split()}
  return " ".join(flags.split() + [f for f in wanted if f.split("=")[0] not in present])


os.environ["XLA_FLAGS"] = suite_xla_flags(
    os.environ.get("XLA_FLAGS", ""), _jaxlib_version(),
    os.environ.get("ENTROPYLAB_TEST_LEGACY_EMITTERS", "1") != "0")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  # JAX's persistent cache in a fresh folder, removed at exit by the process that made
  # it. pytest-xdist's workers (and the tests' subprocesses) inherit the variable, so a
  # program compiled in one test file (e.g. a tiny QARL run) is loaded, not compiled
  # again, by another file's identical program. Results are unchanged: a hit is the
  # executable of the same program.
  _cache = tempfile.mkdtemp(prefix="entropylab-jax-cache-")
  atexit.register(shutil.rmtree, _cache, ignore_errors=True)
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import hypothesis  # noqa: E402
import jax  # noqa: E402
import pytest  # noqa: E402

hypothesis.settings.register_profile("ci", deadline=None, max_examples=40, derandomize=True)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(params=["eager", "jit"])
def variant(request):
  """Runs a test un-jitted and jitted: ``variant(fn)(*args)``."""
  if request.param == "jit":
    return jax.jit
  return lambda fn: fn


@pytest.fixture
def x64():
  """Enables float64 inside one test only."""
  with jax.enable_x64(True):
    yield
