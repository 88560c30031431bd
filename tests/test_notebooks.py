"""The notebooks run from top to bottom, and are stored without outputs.

Every ``notebooks/*.ipynb`` is executed with nbclient on the ``python3`` kernel, from
the repository root, and fails the test if any cell raises (the notebooks ``assert`` the
closed forms they show). The kernel must be this interpreter's environment: ``make
install`` registers one with ``python -m ipykernel install --sys-prefix --name python3``;
the test puts this environment's kernels first on the search path and checks the
kernel's ``sys.prefix`` against pytest's.
"""

import os
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT_S = 300


def _kernel_env(monkeypatch):
  """The kernel inherits os.environ: CPU JAX, this repo importable, this env's kernels."""
  monkeypatch.setenv("JAX_PLATFORMS", os.environ.get("JAX_PLATFORMS") or "cpu")
  # The suite's flags (conftest.suite_xla_flags) less LLVM's optimisation level: the
  # notebooks spend their time running compiled code (simulations, fits), not compiling
  # it, and run as a user's kernel does (the active-particle notebook took 298 s at
  # level 0 and 75 s at the default level here, on the 2-core CPU).
  flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_backend_optimization_level=")]
  monkeypatch.setenv("XLA_FLAGS", " ".join(flags) or "--xla_force_host_platform_device_count=4")
  path = os.environ.get("PYTHONPATH")
  monkeypatch.setenv("PYTHONPATH", str(ROOT) + (os.pathsep + path if path else ""))
  # JUPYTER_PATH is searched before the user's and the system's kernel folders, so the
  # python3 kernel registered in this environment (--sys-prefix) wins over others.
  jupyter_path = os.environ.get("JUPYTER_PATH")
  own = str(Path(sys.prefix) / "share" / "jupyter")
  monkeypatch.setenv("JUPYTER_PATH", own + (os.pathsep + jupyter_path if jupyter_path else ""))
  monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")


def _stdout(cell) -> str:
  return "".join(o.get("text", "") for o in cell.get("outputs", [])
                 if o.get("output_type") == "stream" and o.get("name") == "stdout")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_stored_without_outputs(path):
  nb = nbformat.read(path, as_version=4)
  nbformat.validate(nb)
  dirty = [i for i, c in enumerate(nb.cells)
           if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count"))]
  assert not dirty, f"{path.name}: clear the outputs of cells {dirty} before committing"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path, monkeypatch):
  _kernel_env(monkeypatch)
  nb = nbformat.read(path, as_version=4)
  probe = nbformat.v4.new_code_cell("import sys\nprint(sys.prefix)")
  nb.cells.insert(0, probe)
  client = nbclient.NotebookClient(
      nb, kernel_name="python3", timeout=CELL_TIMEOUT_S, startup_timeout=120,
      resources={"metadata": {"path": str(ROOT)}})
  error = None
  try:
    client.execute()
  except nbclient.exceptions.CellExecutionError as e:
    error = e
  kernel_prefix = _stdout(probe).strip()
  assert kernel_prefix and Path(kernel_prefix).resolve() == Path(sys.prefix).resolve(), (
      f"the python3 kernel runs in {kernel_prefix!r}, not in pytest's environment "
      f"{sys.prefix!r}; run `{sys.executable} -m ipykernel install --sys-prefix "
      "--name python3`")
  if error is not None:
    pytest.fail(f"{path.name}: a cell raised\n{error}", pytrace=False)
