"""Test-wide setup: four virtual CPU devices, so sharded paths run on one machine, and
one compilation cache for the session."""

import atexit
import os
import shutil
import tempfile

# The flags of `make test` (LLVM's optimisation off: see the Makefile).
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4 "
                      "--xla_backend_optimization_level=0")
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
