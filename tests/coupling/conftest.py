"""Fixtures shared by the coupling tests."""

import jax
import pytest


@pytest.fixture
def x64():
  """Enables float64 inside one test only."""
  with jax.enable_x64(True):
    yield
