r"""Bias and RMSE of the nearest-neighbour estimators, and DSE against intrinsic dimension.

Part 1, continuous estimators. For seven families whose answer is known in closed form,
draw ``replicates`` independent sample sets of size N in dimension d, estimate, and report
bias, standard deviation and root-mean-square error in nats per (family, estimator, d, N).
The replicate sample sets of a family are drawn once, in one jitted call, at the largest
N and d; the cell (d, N) takes their first N rows and first d coordinates (nested cells:
common random numbers along N and d, so the trends in N and d are not blurred by fresh
sampling noise) and estimates all replicates with one ``jax.vmap``, in float64, with
neighbour order ``k``.

================  ====================================================  ====================
family            samples (d independent coordinates unless stated)    estimators
================  ====================================================  ====================
gaussian_entropy  X ~ N(0, S), S_ij = entropy_rho^|i-j|                 entropy_knn
uniform_entropy   X ~ U[-w/2, w/2]^d, h = d ln w                        entropy_knn
gaussian_mi       (X_i, Y_i) standard normal pairs, correlation mi_rho  ksg1, ksg2
gamma_exp_mi      X_i ~ Gamma(theta, 1), Y_i | X_i ~ Exp(rate X_i)      ksg1, ksg2
gaussian_cmi      Z_i, U_i, V_i ~ N(0, 1): X = Z + U, Y = Z + g U + V   cmi_ksg
ar1_te            coupled AR(1): S' = a S + e, T' = b T + c S + n       transfer_entropy_ksg
gaussian_kl       P = N(0, I_d), Q = N(m 1, s^2 I_d)                    kl_divergence_knn
================  ====================================================  ====================

True values: :func:`entropylab.info.gaussian_entropy` for ``gaussian_entropy``;
:func:`entropylab.info.gaussian_mutual_information` on the joint covariance for
``gaussian_mi`` (= -d/2 ln(1 - rho^2)), for ``gaussian_cmi`` as I(X; Y,Z) - I(X; Z)
(= d/2 ln(1 + g^2)) and for ``ar1_te`` as I(T'; S,T) - I(T'; T) under the stationary
covariance (the series start in the stationary law, so no burn-in is needed);
``gamma_exp_mi`` has I = d (psi(theta + 1) - ln theta) (Kraskov, Stoegbauer &
Grassberger, PRE 69, 066138, 2004), estimated on (ln X, ln Y), which leaves I unchanged
and tames the heavy tail of Y; ``gaussian_kl`` has
D(P||Q) = d/2 ((1 + m^2)/s^2 - 1 + 2 ln s). ``ar1_te`` uses a = b = 0.5 and
c = ``te_coupling`` with history 1 and lag 1; its N samples come from one series of
length N + 1, so they are serially dependent (the variance is larger than for N
independent draws). Estimators: ``entropy_knn`` is Kozachenko-Leonenko, ``ksg1``/``ksg2``
the two Kraskov et al. algorithms, ``cmi_ksg`` Frenzel-Pompe, ``transfer_entropy_ksg``
Frenzel-Pompe on delay embeddings, ``kl_divergence_knn`` Wang-Kulkarni-Verdu with N
samples from each of P and Q (all in :mod:`entropylab.info.knn`).

Part 2, diffusion spectral entropy against intrinsic dimension, the toy study of Liao,
Liu et al. (arXiv:2312.04823; ``src/manifold_investigation/toy_data_entropy.py`` in the
history of github.com/ChenLiu-1996/DiffusionSpectralEntropy). There, N = 500 points in
D = 2048 ambient dimensions are drawn as ``uniform(-1, 1, (N, D))`` or ``randn(N, D)``;
the coordinates from d on are then all overwritten with one shared standard-normal
constant (so the data fill an axis-aligned d-dimensional box or Gaussian), and noise
``noise * uniform(-1, 1, (N, D))`` is added to every coordinate, for noise levels 0.01,
0.1 and 0.5. DSE is taken with sigma = 10 at t in {1, 2, 3, 5}. We generate the data the
same way (with ``jax.random`` keys; the same key for every d of one family and noise
level, so the curves against d use common random numbers) and call
:func:`entropylab.info.diffusion_spectral_entropy`. There is no random rotation in the
reference and none is needed: DSE depends on the points only through their pairwise
distances, so an orthogonal change of basis leaves it unchanged (the tests check this).

Against the reference figure (``assets/toy-data-entropy.png`` in the same history:
uniform data in the middle panel, Gaussian on the right). Its t = 1, 1 % noise curve
for the uniform data reads about 3.0 / 5.1 / 7.9 / 8.86 / 8.96 bits at d = 102 / 205 /
512 / 1024 / 2048 (:data:`REFERENCE_DSE_BITS_T1`); ``summary.json`` reports ours beside
them for that setting, and the tests require agreement within 0.1 bit. The Gaussian
family rises faster and saturates earlier (about 6.1 / 8.2 / 8.95 / 8.97 / 8.97 bits,
as in the right panel): its coordinates have variance 1 instead of 1/3, so the squared
distances, about 2 d var, are three times larger against 2 sigma^2 = 200. The ceiling is
log2 500 = 8.966 bits, reached once no two points are within reach of sigma and the
kernel matrix is the identity. Noise adds about 2 D noise^2 / 3 to every squared
distance and lifts the curves towards the ceiling (at noise 0.5 even d = 102 is near
it); a larger t suppresses the small eigenvalues and lowers DSE.

Outputs in the run directory: ``bias_rmse_<family>.png`` (one figure per family: rows =
estimators, columns = bias and RMSE against N, one line per dimension d),
``dse_intrinsic_dimension.png`` (DSE against d, one panel per DSE family, one line per
(t, noise), the reference's t = 1 values as black crosses), ``table.md`` (every cell),
``cells/*.json`` (finished cells; ``--resume`` skips them), ``metrics.jsonl`` and
``summary.json`` (per family, the true value and each estimator's bias and RMSE at the
smallest and largest N in the largest d, and its bias at the largest N in the smallest d;
DSE per t against d at the noise level nearest 0.01, and the reference's values).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import digamma

from entropylab import info
from entropylab.runner.cells import run_cells
from entropylab.runner.rundir import RunDir

import experiments

# family -> the estimators applied to its samples, in order.
FAMILIES = {
    "gaussian_entropy": ("entropy_knn",),
    "uniform_entropy": ("entropy_knn",),
    "gaussian_mi": ("ksg1", "ksg2"),
    "gamma_exp_mi": ("ksg1", "ksg2"),
    "gaussian_cmi": ("cmi_ksg",),
    "ar1_te": ("transfer_entropy_ksg",),
    "gaussian_kl": ("kl_divergence_knn",),
}
QUANTITY = {
    "gaussian_entropy": "h(X)", "uniform_entropy": "h(X)", "gaussian_mi": "I(X;Y)",
    "gamma_exp_mi": "I(X;Y)", "gaussian_cmi": "I(X;Y|Z)", "ar1_te": "T(S->T)",
    "gaussian_kl": "D(P||Q)",
}
DSE_FAMILIES = ("uniform", "gaussian")
# Self-coupling a = b of both AR(1) series in ``ar1_te``.
TE_SELF_COUPLING = 0.5
# The reference figure's DSE (bits) at t = 1, N = 500, D = 2048, sigma = 10, by
# intrinsic dimension, read off its uniform-data panel (noise 0.01).
REFERENCE_DSE_BITS_T1 = {102: 3.0, 205: 5.1, 512: 7.9, 1024: 8.86, 2048: 8.96}
REFERENCE_DSE_SETTING = {"points": 500, "ambient": 2048, "sigma": 10.0, "family": "uniform",
                         "noise": 0.01}


@dataclasses.dataclass(frozen=True)
class Config:
  # Part 1: continuous estimators.
  families: tuple[str, ...] = tuple(FAMILIES)
  sample_sizes: tuple[int, ...] = (100, 300, 1000, 3000, 10000)
  dims: tuple[int, ...] = (1, 2, 4, 8)
  replicates: int = 20
  k: int = 3
  mi_rho: float = 0.8
  entropy_rho: float = 0.5
  uniform_width: float = 2.0
  gamma_theta: float = 1.0
  cmi_coupling: float = 1.0
  te_coupling: float = 0.5
  kl_shift: float = 0.5
  kl_scale: float = 1.5
  # Part 2: diffusion spectral entropy against intrinsic dimension.
  dse_families: tuple[str, ...] = DSE_FAMILIES
  dse_noise: tuple[float, ...] = (0.01, 0.1, 0.5)
  dse_points: int = 500
  dse_ambient: int = 2048
  dse_intrinsic: tuple[int, ...] = (102, 205, 512, 1024, 2048)
  dse_sigma: float = 10.0
  dse_times: tuple[float, ...] = (1.0, 2.0, 5.0)
  dse_replicates: int = 5
  seed: int = 0
  progress: bool = True

  def validate(self) -> None:
    bad = [f for f in self.families if f not in FAMILIES]
    if bad:
      raise ValueError(f"families: unknown {bad}; choices: {', '.join(FAMILIES)}")
    bad = [f for f in self.dse_families if f not in DSE_FAMILIES]
    if bad:
      raise ValueError(f"dse_families: unknown {bad}; choices: {', '.join(DSE_FAMILIES)}")
    if not self.families and not _has_dse(self):
      raise ValueError("families and dse_families/dse_intrinsic are all empty: nothing to run")
    if self.k < 1:
      raise ValueError(f"k must be >= 1, got {self.k}")
    if self.families:
      if not self.sample_sizes or min(self.sample_sizes) <= self.k + 1:
        raise ValueError(f"sample_sizes must be integers > k + 1 = {self.k + 1}, "
                         f"got {self.sample_sizes}")
      if not self.dims or min(self.dims) < 1:
        raise ValueError(f"dims must be integers >= 1, got {self.dims}")
      if self.replicates < 2:
        raise ValueError(f"replicates must be >= 2, got {self.replicates}")
    if not -1.0 < self.mi_rho < 1.0 or not -1.0 < self.entropy_rho < 1.0:
      raise ValueError(f"mi_rho and entropy_rho must lie in (-1, 1), got {self.mi_rho}, "
                       f"{self.entropy_rho}")
    for name in ("uniform_width", "gamma_theta", "kl_scale"):
      if not getattr(self, name) > 0:
        raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
    for name in ("cmi_coupling", "te_coupling", "kl_shift"):
      if not math.isfinite(getattr(self, name)):
        raise ValueError(f"{name} must be finite, got {getattr(self, name)}")
    if _has_dse(self):
      if self.dse_points < 2:
        raise ValueError(f"dse_points must be >= 2, got {self.dse_points}")
      if min(self.dse_intrinsic) < 1 or max(self.dse_intrinsic) > self.dse_ambient:
        raise ValueError(f"dse_intrinsic must lie in [1, dse_ambient = {self.dse_ambient}], "
                         f"got {self.dse_intrinsic}")
      if not self.dse_noise or min(self.dse_noise) < 0:
        raise ValueError(f"dse_noise must be levels >= 0, got {self.dse_noise}")
      if not self.dse_times or min(self.dse_times) <= 0:
        raise ValueError(f"dse_times must be > 0, got {self.dse_times}")
      if not self.dse_sigma > 0:
        raise ValueError(f"dse_sigma must be > 0, got {self.dse_sigma}")
      if self.dse_replicates < 1:
        raise ValueError(f"dse_replicates must be >= 1, got {self.dse_replicates}")


def _has_dse(cfg: Config) -> bool:
  """Whether the config has a DSE part (an empty family or dimension list skips it)."""
  return bool(cfg.dse_families and cfg.dse_intrinsic)


PRESETS = {
    # The DSE part runs the reference's own setting (N = 500 in D = 2048, all five d):
    # it costs seconds, and the summary then compares with the reference figure.
    "smoke": Config(sample_sizes=(100, 1000), dims=(1, 4), replicates=8,
                    dse_families=("uniform",), dse_noise=(0.01,), dse_replicates=2),
    "paper": Config(),
}


# --------------------------------------------------------------------------- truth


def _ar1_matrices(cfg: Config) -> tuple[np.ndarray, np.ndarray]:
  """Transition ``A`` of (S, T) and its stationary covariance (unit noise variances)."""
  a = b = TE_SELF_COUPLING
  trans = np.array([[a, 0.0], [cfg.te_coupling, b]])
  # Sigma = A Sigma A^T + I  <=>  (I - A (x) A) vec(Sigma) = vec(I)
  vec = np.linalg.solve(np.eye(4) - np.kron(trans, trans), np.eye(2).reshape(-1))
  return trans, vec.reshape(2, 2)


def _per_coordinate_cov(family: str, cfg: Config) -> np.ndarray:
  """Covariance of one coordinate's variables, in the order the truth formula indexes."""
  if family == "gaussian_mi":
    return np.array([[1.0, cfg.mi_rho], [cfg.mi_rho, 1.0]])  # (x, y)
  if family == "gaussian_cmi":
    g = cfg.cmi_coupling  # (x, y, z) = (z + u, z + g u + v, z)
    return np.array([[2.0, 1.0 + g, 1.0], [1.0 + g, 2.0 + g * g, 1.0], [1.0, 1.0, 1.0]])
  if family == "ar1_te":
    trans, sig = _ar1_matrices(cfg)  # (T', S, T) with T' = c S + b T + noise
    c, b = trans[1, 0], trans[1, 1]
    cov_next = np.array([c * sig[0, 0] + b * sig[0, 1], c * sig[0, 1] + b * sig[1, 1]])
    return np.array([[sig[1, 1], cov_next[0], cov_next[1]],
                     [cov_next[0], sig[0, 0], sig[0, 1]],
                     [cov_next[1], sig[0, 1], sig[1, 1]]])
  raise ValueError(f"no per-coordinate covariance for family {family!r}")


def entropy_cov(d: int, cfg: Config) -> np.ndarray:
  """``[d, d]`` covariance of ``gaussian_entropy``: ``entropy_rho ** |i - j|``."""
  idx = np.arange(d)
  return cfg.entropy_rho ** np.abs(idx[:, None] - idx[None, :]).astype(np.float64)


def true_value(family: str, d: int, cfg: Config) -> float:
  """The exact value (nats) that the family's estimators target, in dimension ``d``."""
  with jax.enable_x64(True):
    if family == "gaussian_entropy":
      return float(info.gaussian_entropy(entropy_cov(d, cfg)))
    if family == "uniform_entropy":
      return d * math.log(cfg.uniform_width)
    if family == "gamma_exp_mi":
      theta = cfg.gamma_theta
      return d * (float(digamma(jnp.float64(theta + 1.0))) - math.log(theta))
    if family == "gaussian_kl":
      m, s = cfg.kl_shift, cfg.kl_scale
      return 0.5 * d * ((1.0 + m * m) / (s * s) - 1.0 + 2.0 * math.log(s))
    if family in ("gaussian_mi", "gaussian_cmi", "ar1_te"):
      per = _per_coordinate_cov(family, cfg)
      v = per.shape[0]
      # Variable j of coordinate i sits at row j * d + i: block j is a d-vector.
      cov = np.kron(per, np.eye(d))
      block = lambda j: list(range(j * d, (j + 1) * d))
      mi = lambda a, b: float(info.gaussian_mutual_information(cov, a, b))
      if v == 2:
        return mi(block(0), block(1))
      # I(A; B | C) = I(A; B, C) - I(A; C)
      return mi(block(0), block(1) + block(2)) - mi(block(0), block(2))
  raise ValueError(f"unknown family {family!r}; choices: {', '.join(FAMILIES)}")


# --------------------------------------------------------------------------- sampling


def _params(family: str, d: int, cfg: Config) -> dict:
  """The float64 arrays a family's sampler needs (traced, so they do not recompile)."""
  p = {}
  if family == "gaussian_entropy":
    p["chol"] = np.linalg.cholesky(entropy_cov(d, cfg))
  elif family == "uniform_entropy":
    p["width"] = cfg.uniform_width
  elif family == "gaussian_mi":
    p["rho"] = cfg.mi_rho
  elif family == "gamma_exp_mi":
    p["theta"] = cfg.gamma_theta
  elif family == "gaussian_cmi":
    p["g"] = cfg.cmi_coupling
  elif family == "ar1_te":
    trans, sig = _ar1_matrices(cfg)
    p["trans"], p["chol"] = trans, np.linalg.cholesky(sig)
  elif family == "gaussian_kl":
    p["shift"], p["scale"] = cfg.kl_shift, cfg.kl_scale
  return {name: jnp.asarray(v, jnp.float64) for name, v in p.items()}


def sample(family: str, key: jax.Array, n: int, d: int, params: Mapping) -> tuple:
  """One sample set of ``family``: the arrays its estimators take (rows are samples)."""
  normal = lambda k, shape: jax.random.normal(k, shape, jnp.float64)
  if family == "gaussian_entropy":
    return (normal(key, (n, d)) @ params["chol"].T,)
  if family == "uniform_entropy":
    half = params["width"] / 2
    return (jax.random.uniform(key, (n, d), jnp.float64, -half, half),)
  if family == "gaussian_mi":
    kx, ky = jax.random.split(key)
    x = normal(kx, (n, d))
    rho = params["rho"]
    return x, rho * x + jnp.sqrt(1.0 - rho * rho) * normal(ky, (n, d))
  if family == "gamma_exp_mi":
    kx, ky = jax.random.split(key)
    x = jax.random.gamma(kx, params["theta"], (n, d), jnp.float64)
    e = jax.random.exponential(ky, (n, d), jnp.float64)
    return jnp.log(x), jnp.log(e) - jnp.log(x)  # ln X and ln Y, Y = E / X ~ Exp(rate X)
  if family == "gaussian_cmi":
    kz, ku, kv = jax.random.split(key, 3)
    z, u, v = normal(kz, (n, d)), normal(ku, (n, d)), normal(kv, (n, d))
    return z + u, z + params["g"] * u + v, z
  if family == "ar1_te":
    return ar1_series(key, n + 1, d, params["trans"], params["chol"])
  if family == "gaussian_kl":
    kp, kq = jax.random.split(key)
    return normal(kp, (n, d)), params["shift"] + params["scale"] * normal(kq, (n, d))
  raise ValueError(f"unknown family {family!r}; choices: {', '.join(FAMILIES)}")


def ar1_series(key: jax.Array, length: int, d: int, trans, chol) -> tuple:
  """``d`` independent stationary copies of the coupled AR(1) pair: ``[length, d]`` each.

  ``(S, T)_{t+1} = trans @ (S, T)_t + noise`` with unit-variance noise, started from the
  stationary law ``N(0, chol chol^T)``.
  """
  k0, ke = jax.random.split(key)
  state = jax.random.normal(k0, (d, 2), jnp.float64) @ chol.T
  noise = jax.random.normal(ke, (length - 1, d, 2), jnp.float64)

  def step(st, e):
    nxt = st @ trans.T + e
    return nxt, nxt

  _, rest = lax.scan(step, state, noise)
  path = jnp.concatenate([state[None], rest], axis=0)
  return path[..., 0], path[..., 1]


def estimate(family: str, samples: tuple, k: int) -> jax.Array:
  """``[E]`` the family's estimates (nats), in the order of ``FAMILIES[family]``."""
  if family in ("gaussian_entropy", "uniform_entropy"):
    return jnp.stack([info.entropy_knn(samples[0], k)])
  if family in ("gaussian_mi", "gamma_exp_mi"):
    x, y = samples
    return jnp.stack([info.mutual_information_ksg(x, y, k, variant=1),
                      info.mutual_information_ksg(x, y, k, variant=2)])
  if family == "gaussian_cmi":
    return jnp.stack([info.conditional_mutual_information_ksg(*samples, k)])
  if family == "ar1_te":
    return jnp.stack([info.transfer_entropy_ksg(*samples, k)])
  if family == "gaussian_kl":
    return jnp.stack([info.kl_divergence_knn(*samples, k)])
  raise ValueError(f"unknown family {family!r}; choices: {', '.join(FAMILIES)}")


@functools.partial(jax.jit, static_argnums=(0, 2, 3, 4))
def _sample_replicates(family: str, key, n: int, d: int, replicates: int, params) -> tuple:
  """Every replicate's sample set, stacked along a leading ``[replicates]`` axis."""
  keys = jax.random.split(key, replicates)
  return jax.vmap(lambda key_r: sample(family, key_r, n, d, params))(keys)


def cell_samples(full: tuple, family: str, n: int, d: int) -> tuple:
  """The ``(n, d)`` cell's samples: the first ``n`` rows (``n + 1`` steps of the series
  for ``ar1_te``) and first ``d`` coordinates of sample sets drawn at the largest N, d.

  Every family's first ``d`` coordinates are exactly its ``d``-dimensional law (the
  coordinates are independent, or for ``gaussian_entropy`` the leading block of a
  Toeplitz covariance), so cells are nested: common random numbers along N and d.
  """
  rows = n + 1 if family == "ar1_te" else n
  return tuple(a[:, :rows, :d] for a in full)


def estimate_replicates(family: str, samples: tuple, k: int) -> np.ndarray:
  """``[E, replicates]`` estimates from stacked sample sets, one ``jax.vmap`` over them.

  The vmap is applied outside any jit of ours, so each estimator's own jitted core is
  batched and compiled once per shape and then reused by every family with that shape
  (both entropy families, both MI families, CMI and transfer entropy), which roughly
  halves the compile time of a sweep.
  """
  return np.asarray(jax.vmap(lambda *s: estimate(family, s, k))(*samples)).T


# --------------------------------------------------------------------------- DSE


def intrinsic_points(key: jax.Array, family: str, n: int, ambient: int, intrinsic,
                     noise) -> jax.Array:
  """``[n, ambient]`` points filling ``intrinsic`` coordinates, as the reference does.

  ``uniform(-1, 1)`` (or standard normal) entries; coordinates ``intrinsic`` and up set to
  one shared standard-normal constant; then ``noise * uniform(-1, 1)`` added everywhere.
  ``intrinsic`` and ``noise`` may be traced.
  """
  k_sig, k_fill, k_noise = jax.random.split(key, 3)
  if family == "uniform":
    x = jax.random.uniform(k_sig, (n, ambient), jnp.float64, -1.0, 1.0)
  elif family == "gaussian":
    x = jax.random.normal(k_sig, (n, ambient), jnp.float64)
  else:
    raise ValueError(f"unknown DSE family {family!r}; choices: {', '.join(DSE_FAMILIES)}")
  fill = jax.random.normal(k_fill, (), jnp.float64)
  x = jnp.where(jnp.arange(ambient) < intrinsic, x, fill)
  return x + noise * jax.random.uniform(k_noise, (n, ambient), jnp.float64, -1.0, 1.0)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _dse_cell(key, family: str, n: int, ambient: int, replicates: int, intrinsic, noise, sigma,
              times):
  """``[replicates, T]`` DSE (bits); one eigendecomposition per replicate serves every t."""
  def one(key_r):
    x = intrinsic_points(key_r, family, n, ambient, intrinsic, noise)
    return jax.vmap(lambda t: info.diffusion_spectral_entropy(x, sigma, t))(times)

  return jax.vmap(one)(jax.random.split(key, replicates))


def _t_label(t: float) -> str:
  return f"t{t:g}"


def _noise_key(noise: float) -> int:
  return int(round(noise * 1e6)) % (2 ** 31)


# --------------------------------------------------------------------------- run


def _cell_id(spec) -> str:
  if spec[0] == "est":
    _, family, d, n = spec
    return f"{family}_d{d}_N{n}"
  _, family, noise, d = spec
  return f"dse_{family}_noise{noise:g}_d{d}"


def run(cfg: Config, run_dir: RunDir, resume: bool = False) -> Mapping[str, object]:
  """Runs every estimator cell and every DSE cell; returns the headline summary."""
  cfg.validate()
  specs = [("est", f, d, n) for f in cfg.families for d in cfg.dims for n in cfg.sample_sizes]
  if _has_dse(cfg):
    specs += [("dse", f, s, d) for f in cfg.dse_families for s in cfg.dse_noise
              for d in cfg.dse_intrinsic]
  base_key = jax.random.PRNGKey(cfg.seed)
  family_key = lambda f: jax.random.fold_in(jax.random.fold_in(base_key, 0),
                                            list(FAMILIES).index(f))
  drawn: dict = {}

  def compute_estimators(family: str, d: int, n: int) -> dict:
    names = FAMILIES[family]
    truth = true_value(family, d, cfg)
    with jax.enable_x64(True):
      if family not in drawn:  # one draw per family, at the largest N and d
        drawn.clear()
        drawn[family] = _sample_replicates(family, family_key(family), max(cfg.sample_sizes),
                                           max(cfg.dims), cfg.replicates,
                                           _params(family, max(cfg.dims), cfg))
      est = estimate_replicates(family, cell_samples(drawn[family], family, n, d), cfg.k)
    if not np.all(np.isfinite(est)):
      raise FloatingPointError(f"non-finite estimate in cell {_cell_id(('est', family, d, n))}")
    err = est - truth
    return {
        "kind": "estimators", "family": family, "d": d, "N": n, "true_nats": truth,
        "estimators": list(names),
        "mean": {e: float(est[i].mean()) for i, e in enumerate(names)},
        "bias": {e: float(err[i].mean()) for i, e in enumerate(names)},
        "std": {e: float(est[i].std(ddof=1)) for i, e in enumerate(names)},
        "rmse": {e: float(np.sqrt((err[i] ** 2).mean())) for i, e in enumerate(names)},
    }

  def compute_dse(family: str, noise: float, d: int) -> dict:
    # Same key for every d of one (family, noise): common random numbers along d.
    key = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(
        base_key, 1), DSE_FAMILIES.index(family)), _noise_key(noise))
    with jax.enable_x64(True):
      h = np.asarray(_dse_cell(key, family, cfg.dse_points, cfg.dse_ambient, cfg.dse_replicates,
                               jnp.int32(d), jnp.float64(noise), jnp.float64(cfg.dse_sigma),
                               jnp.asarray(cfg.dse_times, jnp.float64)))
    if not np.all(np.isfinite(h)):
      raise FloatingPointError(f"non-finite DSE in cell {_cell_id(('dse', family, noise, d))}")
    labels = [_t_label(t) for t in cfg.dse_times]
    return {
        "kind": "dse", "family": family, "noise": noise, "intrinsic_dim": d,
        "points": cfg.dse_points, "ambient_dim": cfg.dse_ambient, "sigma": cfg.dse_sigma,
        "dse_bits": {lab: float(h[:, j].mean()) for j, lab in enumerate(labels)},
        "dse_std_bits": {lab: float(h[:, j].std(ddof=1)) if h.shape[0] > 1 else 0.0
                         for j, lab in enumerate(labels)},
        "replicate_bits": {lab: [float(v) for v in h[:, j]] for j, lab in enumerate(labels)},
    }

  def compute(spec):
    if spec[0] == "est":
      return compute_estimators(*spec[1:])
    return compute_dse(*spec[1:])

  def metrics(c):
    if c["kind"] == "dse":
      return {f"dse_{t}_bits": v for t, v in c["dse_bits"].items()}
    return {f"rmse_{e}": v for e, v in c["rmse"].items()}

  results = run_cells(run_dir, [(_cell_id(s), s) for s in specs], compute, resume=resume,
                      desc="information_estimators", progress=cfg.progress, metrics=metrics)
  _plot_estimators(cfg, results, run_dir)
  if _has_dse(cfg):
    _plot_dse(cfg, results, run_dir)
  _write_table(cfg, results, run_dir)
  return _summary(cfg, results)


# --------------------------------------------------------------------------- outputs


def _plot_estimators(cfg: Config, results, run_dir: RunDir) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  ns = list(cfg.sample_sizes)
  for family in cfg.families:
    names = FAMILIES[family]
    fig, axes = plt.subplots(len(names), 2, figsize=(10, 3.2 * len(names)), squeeze=False,
                             sharex=True)
    for row, name in enumerate(names):
      for d in cfg.dims:
        cells = [results[("est", family, d, n)] for n in ns]
        truth = cells[0]["true_nats"]
        line, = axes[row, 0].plot(ns, [c["bias"][name] for c in cells], marker="o", ms=3,
                                  label=f"d={d} (true {truth:.3g})")
        axes[row, 1].plot(ns, [c["rmse"][name] for c in cells], marker="o", ms=3,
                          color=line.get_color(), label=f"d={d}")
      axes[row, 0].axhline(0.0, color="k", lw=0.6)
      axes[row, 0].set_ylabel(f"{name}\nbias [nats]")
      axes[row, 1].set_ylabel("RMSE [nats]")
      axes[row, 1].set_yscale("log")
      for ax in axes[row]:
        ax.set_xscale("log")
      axes[row, 0].legend(fontsize=7)
    for ax in axes[-1]:
      ax.set_xlabel("sample size N")
    fig.suptitle(f"{family}: {QUANTITY[family]}, k={cfg.k}, {cfg.replicates} replicates per point")
    fig.tight_layout()
    fig.savefig(run_dir.figure_path(f"bias_rmse_{family}"), dpi=110)
    plt.close(fig)


def _plot_dse(cfg: Config, results, run_dir: RunDir) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  dims = list(cfg.dse_intrinsic)
  styles = ["-", "--", ":", "-."]
  fig, axes = plt.subplots(1, len(cfg.dse_families),
                           figsize=(max(8.0, 6.0 * len(cfg.dse_families)), 4.4), squeeze=False)
  for col, family in enumerate(cfg.dse_families):
    ax = axes[0, col]
    for j, t in enumerate(cfg.dse_times):
      color = f"C{j}"
      for s_idx, noise in enumerate(cfg.dse_noise):
        cells = [results[("dse", family, noise, d)] for d in dims]
        mean = np.array([c["dse_bits"][_t_label(t)] for c in cells])
        std = np.array([c["dse_std_bits"][_t_label(t)] for c in cells])
        ax.plot(dims, mean, marker="o", ms=3, color=color, ls=styles[s_idx % len(styles)],
                label=f"t={t:g}, noise={noise:g}")
        ax.fill_between(dims, mean - std, mean + std, color=color, alpha=0.15)
    if _reference_applies(cfg, family):
      ref = [(d, v) for d, v in REFERENCE_DSE_BITS_T1.items() if d in dims]
      ax.plot([d for d, _ in ref], [v for _, v in ref], "kx", ms=8, mew=2,
              label="reference, t=1, noise=0.01")
    ax.axhline(math.log2(cfg.dse_points), color="grey", lw=0.6, ls=":")
    ax.set_xlabel("intrinsic dimension d")
    ax.set_ylabel("DSE [bits]")
    ax.set_title(f"{family}: N={cfg.dse_points}, D={cfg.dse_ambient}, sigma={cfg.dse_sigma:g}",
                 fontsize=9)
    ax.legend(fontsize=7)
  fig.suptitle(f"DSE against intrinsic dimension ({cfg.dse_replicates} replicates per point, "
               f"band = ± std)", fontsize=11)
  fig.tight_layout()
  fig.savefig(run_dir.figure_path("dse_intrinsic_dimension"), dpi=110)
  plt.close(fig)


def _write_table(cfg: Config, results, run_dir: RunDir) -> None:
  lines = []
  if cfg.families:
    lines += ["## Continuous estimators (nats)", "",
              "| family | estimator | d | N | true | mean | bias | std | RMSE |",
              "|" + " --- |" * 9]
    for f in cfg.families:
      for name in FAMILIES[f]:
        for d in cfg.dims:
          for n in cfg.sample_sizes:
            c = results[("est", f, d, n)]
            lines.append(f"| {f} | {name} | {d} | {n} | {c['true_nats']:.4f} | "
                         f"{c['mean'][name]:.4f} | {c['bias'][name]:+.4f} | "
                         f"{c['std'][name]:.4f} | {c['rmse'][name]:.4f} |")
    lines.append("")
  if _has_dse(cfg):
    labels = [_t_label(t) for t in cfg.dse_times]
    lines += [f"## Diffusion spectral entropy (bits), N={cfg.dse_points}, D={cfg.dse_ambient}, "
              f"sigma={cfg.dse_sigma:g}", "",
              "| family | noise | d | " + " | ".join(f"DSE {lab} (mean ± std)" for lab in labels)
              + " | reference t1 |",
              "|" + " --- |" * (4 + len(labels))]
    for f in cfg.dse_families:
      for noise in cfg.dse_noise:
        for d in cfg.dse_intrinsic:
          c = results[("dse", f, noise, d)]
          cols = " | ".join(f"{c['dse_bits'][lab]:.3f} ± {c['dse_std_bits'][lab]:.3f}"
                            for lab in labels)
          ref = (f"{REFERENCE_DSE_BITS_T1[d]:.2f}"
                 if _reference_applies(cfg, f) and noise == REFERENCE_DSE_SETTING["noise"]
                 and d in REFERENCE_DSE_BITS_T1 else "")
          lines.append(f"| {f} | {noise:g} | {d} | {cols} | {ref} |")
  (run_dir.path / "table.md").write_text("\n".join(lines) + "\n")


def _reference_applies(cfg: Config, family: str) -> bool:
  ref = REFERENCE_DSE_SETTING
  return (family == ref["family"] and cfg.dse_points == ref["points"]
          and cfg.dse_ambient == ref["ambient"] and cfg.dse_sigma == ref["sigma"])


def _summary(cfg: Config, results) -> dict:
  summary: dict = {}
  if cfg.families:
    d, d_lo = max(cfg.dims), min(cfg.dims)
    n_lo, n_hi = min(cfg.sample_sizes), max(cfg.sample_sizes)
    summary["replicates"] = cfg.replicates
    summary["estimator_cells"] = (f"true value, bias and RMSE at d={d} for N={n_lo} and N={n_hi}; "
                                  f"bias_low_d at d={d_lo}, N={n_hi}")
    for f in cfg.families:
      lo, hi = results[("est", f, d, n_lo)], results[("est", f, d, n_hi)]
      low_d = results[("est", f, d_lo, n_hi)]
      pair = lambda key, e: {f"N{n_lo}": round(lo[key][e], 4), f"N{n_hi}": round(hi[key][e], 4)}
      summary[f] = {
          "true_nats": round(hi["true_nats"], 4),
          "bias_nats": {e: pair("bias", e) for e in FAMILIES[f]},
          "rmse_nats": {e: pair("rmse", e) for e in FAMILIES[f]},
          "bias_low_d_nats": {e: round(low_d["bias"][e], 4) for e in FAMILIES[f]},
      }
  if _has_dse(cfg):
    noise = min(cfg.dse_noise, key=lambda s: abs(s - REFERENCE_DSE_SETTING["noise"]))
    dse: dict = {"setting": f"N={cfg.dse_points}, D={cfg.dse_ambient}, sigma={cfg.dse_sigma:g}, "
                            f"noise={noise:g}, {cfg.dse_replicates} replicates",
                 "intrinsic_dims": list(cfg.dse_intrinsic)}
    for f in cfg.dse_families:
      dse[f] = {_t_label(t): [round(results[("dse", f, noise, d)]["dse_bits"][_t_label(t)], 3)
                              for d in cfg.dse_intrinsic]
                for t in cfg.dse_times}
      if (_reference_applies(cfg, f) and noise == REFERENCE_DSE_SETTING["noise"]
          and all(d in REFERENCE_DSE_BITS_T1 for d in cfg.dse_intrinsic)):
        dse["reference_uniform_t1"] = [REFERENCE_DSE_BITS_T1[d] for d in cfg.dse_intrinsic]
    summary["dse_bits"] = dse
  return summary


experiments.register(
    "information_estimators",
    "bias/RMSE of kNN entropy, KSG MI, CMI, transfer entropy, KL vs N and d on known families; "
    "DSE vs intrinsic dimension",
    PRESETS,
    run,
)
