"""The XLA flags the suite compiles with (tests/conftest.py)."""

import os

from tests.conftest import LEGACY_EMITTERS, suite_xla_flags


def test_suite_flags_keep_the_callers_and_add_the_emitters_only_on_jaxlib_0_10():
  base = suite_xla_flags("", (0, 10))
  assert base.split() == ["--xla_force_host_platform_device_count=4",
                          "--xla_backend_optimization_level=0", LEGACY_EMITTERS]
  # A flag the caller sets keeps the caller's value and is not repeated.
  mine = suite_xla_flags("--xla_force_host_platform_device_count=8 "
                         "--xla_cpu_use_fusion_emitters=true", (0, 10))
  assert mine.split() == ["--xla_force_host_platform_device_count=8",
                          "--xla_cpu_use_fusion_emitters=true",
                          "--xla_backend_optimization_level=0"]
  # Idempotent (xdist's workers and the tests' subprocesses load the conftest again).
  assert suite_xla_flags(base, (0, 10)) == base
  # Another jaxlib, or the switch off: no emitter flag (an unknown flag aborts XLA).
  for flags in (suite_xla_flags("", (0, 12)), suite_xla_flags("", ()),
                suite_xla_flags("", (0, 10), legacy_emitters=False)):
    assert LEGACY_EMITTERS not in flags.split()
  # This process runs with them (or with the caller's values of the same flags).
  names = {f.split("=")[0] for f in os.environ["XLA_FLAGS"].split()}
  assert {"--xla_force_host_platform_device_count",
          "--xla_backend_optimization_level"} <= names
