"""Times the routines that can give the spectrum DSE needs, on the default device.

``python -m benchmarks.spectrum_routines [--sizes 500 2000] [--out DIR]``

``diffusion_spectral_entropy`` spends almost all of its time in the eigenvalues of the
symmetric ``[N, N]`` matrix ``K = D^-1/2 W D^-1/2``. Because ``K`` is symmetric, its
singular values are the moduli of its eigenvalues, which is all DSE uses (``|lambda|^t``),
so ``svd(compute_uv=False)`` is an alternative to ``eigvalsh``; the solver libraries
implement the two differently (on NVIDIA GPUs: cuSOLVER's ``syevd`` and ``gesvd`` /
``gesvdj``). This script times each routine on the same matrices and reports the DSE
each one gives against float64 ``eigvalsh``. It is not part of ``python -m benchmarks``;
it answers which routine a device should use.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.bench_info import time_call
from entropylab.info import spectral

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _kernel_matrix(x, sigma):
  return spectral._diffusion_operator(spectral._kernel(x, sigma))


def _routines():
  """Name -> function of ``K [N, N]`` giving its eigenvalues or their moduli."""
  eigh = jax.lax.linalg.eigh
  svd = jax.lax.linalg.svd
  impl = jax.lax.linalg.EighImplementation
  alg = jax.lax.linalg.SvdAlgorithm
  out = {"jnp.linalg.eigvalsh": jnp.linalg.eigvalsh,
         "eigh QR": lambda k: eigh(k, implementation=impl.QR)[1],
         "eigh Jacobi": lambda k: eigh(k, implementation=impl.JACOBI)[1]}
  for name in ("DEFAULT", "QR", "JACOBI", "POLAR"):
    out[f"svd {name} (values only)"] = functools.partial(
        lambda k, a: svd(k, full_matrices=False, compute_uv=False, algorithm=a),
        a=getattr(alg, name))
  return out


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.spectrum_routines")
  parser.add_argument("--sizes", type=int, nargs="+", default=[500, 2000])
  parser.add_argument("--dims", type=int, default=10)
  parser.add_argument("--out", type=Path, default=RESULTS_DIR)
  args, _ = parser.parse_known_args(argv)
  dev = jax.devices()[0]
  rng = np.random.default_rng(0)
  rows = []
  for n in args.sizes:
    x64 = rng.normal(size=(n, args.dims))
    with jax.enable_x64(True):
      k64 = jax.jit(_kernel_matrix)(jnp.asarray(x64), 10.0)
      ref = float(spectral._spectrum_entropy_bits(jnp.linalg.eigvalsh(k64), 1.0))
    x = jnp.asarray(x64, jnp.float32)
    k = jax.jit(_kernel_matrix)(x, jnp.float32(10.0))
    whole = jax.jit(lambda x: spectral._points_entropy(x, jnp.float32(10.0), jnp.float32(1.0)))
    rows.append((n, "diffusion_spectral_entropy (whole, eigvalsh)", 1e3 * time_call(whole, x)[0],
                 float(whole(x)), ref))
    for name, fn in _routines().items():
      f = jax.jit(fn)
      try:
        seconds, lam = time_call(f, k)
        ms = 1e3 * seconds
        h = float(spectral._spectrum_entropy_bits(lam, jnp.float32(1.0)))
      except Exception as e:  # noqa: BLE001 - a routine a backend lacks is reported
        rows.append((n, f"{name}: {type(e).__name__}", float("nan"), float("nan"), ref))
        continue
      rows.append((n, name, ms, h, ref))
    print(rows[-len(_routines()) - 1:], flush=True)
  lines = [f"# spectrum routines on {dev.device_kind}", "",
           f"- device: `{dev.device_kind}` (platform `{dev.platform}`); jax {jax.__version__}, "
           f"Python {platform.python_version()}",
           f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
           f"- command: `python -m benchmarks.spectrum_routines --sizes "
           f"{' '.join(map(str, args.sizes))}`",
           f"- matrices: K = D^-1/2 W D^-1/2 of N standard normal points in d={args.dims}, "
           "sigma=10, float32; times are medians of jitted calls (`benchmarks.bench_info.time_call`, compile excluded); "
           "DSE in bits, reference = float64 eigvalsh", "",
           "| N | routine | ms | DSE (float32) | DSE float64 reference | abs diff |",
           "|---:|---|---:|---:|---:|---:|"]
  for n, name, ms, h, ref in rows:
    lines.append(f"| {n} | `{name}` | {ms:.3f} | {h:.6f} | {ref:.6f} | {abs(h - ref):.1e} |")
  args.out.mkdir(parents=True, exist_ok=True)
  safe = "".join(c if c.isalnum() else "_" for c in dev.device_kind).strip("_")
  path = args.out / f"spectrum_routines_{dev.platform}_{safe}.md"
  path.write_text("\n".join(lines) + "\n")
  print("\n".join(lines))
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
