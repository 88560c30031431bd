"""Test-wide setup: four virtual CPU devices, so sharded paths run on one machine."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

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
