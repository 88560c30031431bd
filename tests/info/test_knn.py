"""Nearest-neighbour estimators (entropylab.info.knn) and Gaussian closed forms.

Three kinds of checks:

* an independent slow reference written here (``scipy.spatial.cKDTree`` for the
  neighbour distances, NumPy brute force for the counts, ``scipy.special.digamma``) must
  give the same estimate to 1e-10 in float64;
* the peer package ennemi 1.5.0 (its private single-estimate functions, which skip its
  preprocessing) on the same samples to 1e-6: ennemi's digamma is an asymptotic
  expansion accurate to about 1e-6 for small integers, the only difference;
* closed forms, for the mean of four independent estimates (vmapped), within about four
  standard errors of that mean (one estimate's spread at the sample size used was
  measured over 8 seeds and is noted beside each check), plus the known finite-sample
  bias where there is one: Gaussian entropy and mutual information, the uniform's
  ``ln(b - a)``, the Gamma-exponential pair, the three-variable Gaussian CMI, the
  transfer entropy of coupled AR(1) series and the KL divergence of two Gaussians.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.special
import scipy.stats
from scipy.spatial import cKDTree

from entropylab import info
from entropylab.info import knn
from entropylab.runner.devices import make_mesh

ennemi = pytest.importorskip("ennemi._entropy_estimators")


# --------------------------------------------------------------------------- references


def _pairwise_max(a):
  return np.max(np.abs(a[:, None, :] - a[None, :, :]), axis=-1)


def _count(space, radius, strict):
  d = _pairwise_max(space)
  np.fill_diagonal(d, np.inf)
  inside = d < radius[:, None] if strict else d <= radius[:, None]
  return inside.sum(axis=1)


def _col(a):
  a = np.asarray(a, np.float64)
  return a[:, None] if a.ndim == 1 else a


def ref_entropy(x, k, norm):
  x = _col(x)
  n, d = x.shape
  r = cKDTree(x).query(x, k=k + 1, p=np.inf if norm == "max" else 2)[0][:, -1]
  log_ball = d * math.log(2) if norm == "max" else (
      0.5 * d * math.log(math.pi) - math.lgamma(0.5 * d + 1))
  return scipy.special.digamma(n) - scipy.special.digamma(k) + log_ball + d * np.mean(np.log(r))


def ref_mi(x, y, k, variant):
  x, y = _col(x), _col(y)
  n = len(x)
  xy = np.hstack([x, y])
  dist, idx = cKDTree(xy).query(xy, k=k + 1, p=np.inf)
  psi = scipy.special.digamma
  if variant == 1:
    nx, ny = _count(x, dist[:, -1], True), _count(y, dist[:, -1], True)
    return psi(k) + psi(n) - np.mean(psi(nx + 1) + psi(ny + 1))
  nbrs = idx[:, 1:]
  ex = np.max(np.abs(x[nbrs] - x[:, None, :]), axis=(1, 2))
  ey = np.max(np.abs(y[nbrs] - y[:, None, :]), axis=(1, 2))
  nx, ny = _count(x, ex, False), _count(y, ey, False)
  return psi(k) - 1 / k + psi(n) - np.mean(psi(nx) + psi(ny))


def ref_cmi(x, y, z, k):
  x, y, z = _col(x), _col(y), _col(z)
  xyz = np.hstack([x, y, z])
  eps = cKDTree(xyz).query(xyz, k=k + 1, p=np.inf)[0][:, -1]
  psi = scipy.special.digamma
  nxz = _count(np.hstack([x, z]), eps, True)
  nyz = _count(np.hstack([y, z]), eps, True)
  nz = _count(z, eps, True)
  return psi(k) - np.mean(psi(nxz + 1) + psi(nyz + 1) - psi(nz + 1))


def ref_kl(x, y, k):
  x, y = _col(x), _col(y)
  n, d = x.shape
  rho = cKDTree(x).query(x, k=k + 1)[0][:, -1]
  nu = cKDTree(y).query(x, k=k)[0]
  nu = nu[:, -1] if k > 1 else nu
  return d * np.mean(np.log(nu / rho)) + math.log(len(y) / (n - 1))


def gaussian(rng, cov, n):
  return rng.multivariate_normal(np.zeros(len(cov)), cov, size=n)


# --------------------------------------------------------------------------- references match


@pytest.mark.parametrize("norm", ["euclidean", "max"])
@pytest.mark.parametrize("d, k", [(1, 3), (3, 5)])
def test_entropy_equals_slow_reference(x64, norm, d, k):
  x = np.random.default_rng(d).standard_t(5, size=(400, d))
  assert abs(float(info.entropy_knn(x, k=k, norm=norm)) - ref_entropy(x, k, norm)) < 1e-10


@pytest.mark.parametrize("variant", [1, 2])
@pytest.mark.parametrize("dx, dy", [(1, 1), (2, 3)])
def test_ksg_equals_slow_reference(x64, variant, dx, dy):
  rng = np.random.default_rng(10 * dx + dy)
  x = rng.normal(size=(400, dx))
  y = x[:, :1] ** 2 + 0.5 * rng.normal(size=(400, dy))
  got = float(info.mutual_information_ksg(x, y, k=4, variant=variant))
  assert abs(got - ref_mi(x, y, 4, variant)) < 1e-10


def test_cmi_te_and_kl_equal_slow_reference(x64):
  rng = np.random.default_rng(3)
  z = rng.normal(size=(300, 2))
  x = z[:, :1] + rng.normal(size=(300, 1))
  y = np.sin(z[:, 1:]) + x + rng.normal(size=(300, 1))
  assert abs(float(info.conditional_mutual_information_ksg(x, y, z, k=3))
             - ref_cmi(x, y, z, 3)) < 1e-10
  s, t = rng.normal(size=300), rng.normal(size=300)
  # history 2, lag 2: T[t+1] against (S[t-2], S[t-1]) given (T[t-1], T[t]).
  future = t[3:]
  target_past = np.stack([t[2:-1], t[1:-2]], axis=1)[:, ::-1]
  source_past = np.stack([s[1:-2], s[:-3]], axis=1)[:, ::-1]
  got = float(info.transfer_entropy_ksg(s, t, k=3, history=2, lag=2))
  assert abs(got - ref_cmi(future, source_past, target_past, 3)) < 1e-10
  a, b = rng.normal(size=(300, 2)), 1.5 * rng.normal(size=(250, 2)) + 0.3
  for k in (1, 4):
    assert abs(float(info.kl_divergence_knn(a, b, k=k)) - ref_kl(a, b, k)) < 1e-10


def test_agrees_with_ennemi(x64):
  rng = np.random.default_rng(4)
  xyz = gaussian(rng, np.array([[1, 0.5, 0.2], [0.5, 1, 0.3], [0.2, 0.3, 1]]), 1000)
  x, y, z = xyz[:, :1], xyz[:, 1:2], xyz[:, 2:]
  assert abs(float(info.entropy_knn(xyz, k=3, norm="max"))
             - ennemi._estimate_single_entropy(xyz, 3)) < 1e-6
  assert abs(float(info.mutual_information_ksg(x, y, k=3))
             - ennemi._estimate_single_mi(x, y, 3)) < 1e-6
  assert abs(float(info.conditional_mutual_information_ksg(x, y, z, k=3))
             - ennemi._estimate_conditional_mi(x, y, z, 3)) < 1e-6


# --------------------------------------------------------------------------- closed forms


def test_gaussian_closed_forms_against_scipy_and_known_values(x64):
  cov = np.array([[2.0, 0.3, 0.1], [0.3, 1.0, -0.2], [0.1, -0.2, 0.5]])
  ref = scipy.stats.multivariate_normal(cov=cov).entropy()
  assert abs(float(info.gaussian_entropy(cov)) - ref) < 1e-12
  assert abs(float(info.gaussian_entropy(cov, base=2)) - ref / math.log(2)) < 1e-12
  rho = 0.8
  assert abs(float(info.gaussian_mutual_information([[1, rho], [rho, 1]], 0, 1))
             + 0.5 * math.log(1 - rho**2)) < 1e-12
  s = np.array([[1, 1, 1], [1, 4, 1], [1, 1, 9]], float)
  cmi = 0.5 * (math.log(8) + math.log(35) - math.log(9) - math.log(24))
  # I(X;Y|Z) = I(X;(Y,Z)) - I(X;Z) (chain rule)
  got = info.gaussian_mutual_information(s, [0], [1, 2]) - info.gaussian_mutual_information(
      s, [0], [2])
  assert abs(float(got) - cmi) < 1e-12
  batch = np.stack([cov, 2 * cov])
  np.testing.assert_allclose(info.gaussian_entropy(batch),
                             [ref, ref + 1.5 * math.log(2)], atol=1e-12)


REPS = 4  # independent samples per closed-form check; their mean estimate is compared


def mean_estimate(fn, *samples):
  """Mean of ``fn`` over the leading replicate axis of each sample array (vmapped)."""
  return float(jnp.mean(jax.vmap(fn)(*samples)))


def test_knn_entropy_of_gaussian_and_uniform(x64):
  rng = np.random.default_rng(5)
  cov = np.array([[1.0, 0.5, 0.0], [0.5, 2.0, 0.3], [0.0, 0.3, 0.5]])
  x = np.stack([gaussian(rng, cov, 4000) for _ in range(REPS)])
  truth = float(info.gaussian_entropy(cov))
  # In 3-D at N = 4000 the estimator is biased by about -0.035 nats (mean of 8 seeds,
  # either norm); one estimate's standard deviation is about 0.01.
  for norm in ("euclidean", "max"):
    got = mean_estimate(lambda a: info.entropy_knn(a, k=3, norm=norm), x)
    assert -0.06 < got - truth < 0.0
  u = rng.uniform(-1.0, 2.5, size=(REPS, 4000))
  assert abs(mean_estimate(lambda a: info.entropy_knn(a, k=3), u) - math.log(3.5)) < 0.02


def test_ksg_against_gaussian_and_gamma_exponential(x64):
  rng = np.random.default_rng(6)
  rho = 0.8
  xy = np.stack([gaussian(rng, np.array([[1, rho], [rho, 1]]), 4000) for _ in range(REPS)])
  truth = -0.5 * math.log(1 - rho**2)
  # One estimate's standard deviation at N = 4000 is about 0.016 (8 seeds).
  for variant in (1, 2):
    got = mean_estimate(lambda a: info.mutual_information_ksg(a[:, 0], a[:, 1], k=4,
                                                              variant=variant), xy)
    assert abs(got - truth) < 0.035
  # Gamma-exponential: X ~ Gamma(theta, 1), Y | X ~ Exp(rate X); I = psi(theta + 1) - ln theta
  # (Kraskov et al. 2004, section IV). The estimate is invariant to monotone maps of
  # each variable; logs even out the scales.
  theta = 2.0
  gx = rng.gamma(theta, size=(REPS, 4000))
  gy = rng.exponential(1.0 / gx)
  truth = scipy.special.digamma(theta + 1) - math.log(theta)
  got = mean_estimate(lambda a, b: info.mutual_information_ksg(a, b, k=4), np.log(gx), np.log(gy))
  assert abs(got - truth) < 0.035


def test_three_variable_gaussian_cmi(x64):
  s = np.array([[1, 1, 1], [1, 4, 1], [1, 1, 9]], float)
  rng = np.random.default_rng(7)
  xyz = np.stack([gaussian(rng, s, 4000) for _ in range(REPS)])
  truth = 0.5 * (math.log(8) + math.log(35) - math.log(9) - math.log(24))
  got = mean_estimate(
      lambda a: info.conditional_mutual_information_ksg(a[:, 0], a[:, 1], a[:, 2], k=4), xyz)
  assert abs(got - truth) < 0.035


def coupled_ar1(rng, a, b, c, n):
  x, y = np.zeros(n + 100), np.zeros(n + 100)
  for t in range(n + 99):
    x[t + 1] = a * x[t] + rng.normal()
    y[t + 1] = b * y[t] + c * x[t] + rng.normal()
  return x[100:], y[100:]


def test_transfer_entropy_of_coupled_ar1(x64):
  """X' = a X + e, Y' = b Y + c X + f: T_{X->Y} = 1/2 log(Var(Y'|Y) / Var(f))."""
  a, b, c = 0.5, 0.6, 0.8
  rng = np.random.default_rng(8)
  x, y = map(np.stack, zip(*[coupled_ar1(rng, a, b, c, 4000) for _ in range(REPS)]))
  trans = np.array([[a, 0.0], [c, b]])
  stat = scipy.linalg.solve_discrete_lyapunov(trans, np.eye(2))
  cov_next = trans @ stat  # Cov((X', Y'), (X, Y))
  var_cond = stat[1, 1] - cov_next[1, 1] ** 2 / stat[1, 1]
  truth = 0.5 * math.log(var_cond / 1.0)
  te = lambda s, t: info.transfer_entropy_ksg(s, t, k=4)
  assert abs(mean_estimate(te, x, y) - truth) < 0.035
  # No coupling from Y to X: the reverse transfer entropy is about 0.
  assert abs(mean_estimate(te, y, x)) < 0.02


def test_kl_divergence_of_two_gaussians(x64):
  rng = np.random.default_rng(9)
  c1, c2 = np.diag([1.0, 0.5]), np.array([[2.0, 0.3], [0.3, 1.0]])
  m2 = np.array([0.5, -0.2])
  x = np.stack([gaussian(rng, c1, 4000) for _ in range(REPS)])
  y = np.stack([rng.multivariate_normal(m2, c2, size=4000) for _ in range(REPS)])
  inv = np.linalg.inv(c2)
  truth = 0.5 * (np.trace(inv @ c1) + m2 @ inv @ m2 - 2
                 + math.log(np.linalg.det(c2) / np.linalg.det(c1)))
  # One estimate's standard deviation at N = 4000 is about 0.02 (8 seeds).
  assert abs(mean_estimate(lambda a, b: info.kl_divergence_knn(a, b, k=4), x, y) - truth) < 0.05


# --------------------------------------------------------------------------- search and transforms


def test_blocks_mesh_jit_and_vmap_give_the_same_estimate(x64):
  rng = np.random.default_rng(12)
  x, y = rng.normal(size=(203, 2)), rng.normal(size=(203, 1))
  ref = float(info.mutual_information_ksg(x, y, k=3))
  mesh = make_mesh()
  assert mesh.devices.size == 4
  for kwargs in ({"block_size": 1}, {"block_size": 17}, {"block_size": 17, "mesh": mesh}):
    assert float(info.mutual_information_ksg(x, y, k=3, **kwargs)) == ref
  # jit fuses the final mean differently: equal to rounding.
  assert abs(float(jax.jit(lambda a, b: info.mutual_information_ksg(a, b, k=3))(x, y)) - ref) < 1e-12
  xs = np.stack([x, x[::-1] * 2.0, rng.normal(size=(203, 2))])
  batched = jax.vmap(lambda a: info.entropy_knn(a, k=3, block_size=50))(xs)
  np.testing.assert_allclose(batched, [info.entropy_knn(a, k=3) for a in xs], rtol=0, atol=1e-12)


def _search_cases():
  rng = np.random.default_rng(16)
  x, y, z = rng.normal(size=(157, 2)), rng.normal(size=(157, 1)), rng.normal(size=(157, 2))
  y = y + x[:, :1]
  w = rng.normal(size=(157, 4))
  v = w + 0.5 * rng.normal(size=(157, 4))
  ties = rng.integers(0, 4, size=(157, 2)).astype(float)  # ties in the marginal counts
  s = rng.normal(size=400)
  t = 0.8 * np.roll(s, 1) + 0.6 * rng.normal(size=400)
  mesh = make_mesh()
  return {
      "entropy max": lambda: info.entropy_knn(x, k=2, norm="max"),
      "entropy 4-d": lambda: info.entropy_knn(w, k=3, block_size=5),
      "entropy k=20": lambda: info.entropy_knn(x, k=20),  # lax.top_k, not passes
      "mi 4+4": lambda: info.mutual_information_ksg(w, v, k=3, block_size=6),
      "mi 4+4 variant 2": lambda: info.mutual_information_ksg(w, v, k=3, variant=2),
      "mi ties": lambda: info.mutual_information_ksg(ties, z, k=3),
      "mi mesh": lambda: info.mutual_information_ksg(x, z, k=4, block_size=9, mesh=mesh),
      "cmi": lambda: info.conditional_mutual_information_ksg(x, y, z, k=3),
      "te": lambda: info.transfer_entropy_ksg(s, t, k=3, history=2),
      "kl 4-d": lambda: info.kl_divergence_knn(w, v[:100], k=2, block_size=4),
      "vmap": lambda: jax.vmap(lambda a: info.entropy_knn(a, k=3))(np.stack([w, 2 * v])),
  }


def test_every_search_method_gives_the_same_estimates(x64, monkeypatch):
  """Every estimator with each neighbour search forced (the k-d tree, the sweep and the
  accelerators' brute force, all on CPU; also over a 4-device mesh and under vmap) gives
  the same estimate to 1e-12."""
  cases = _search_cases()
  results = {}
  try:
    for method in knn.METHODS:
      jax.clear_caches()
      monkeypatch.setattr(knn, "_dispatch",
                          lambda _, searches, cpu, *args, m=method: searches[m](*args))
      results[method] = {name: np.asarray(f()) for name, f in cases.items()}
  finally:
    jax.clear_caches()
  for method in ("tree", "dense"):
    for name in cases:
      np.testing.assert_allclose(results[method][name], results["sweep"][name], rtol=0,
                                 atol=1e-12, err_msg=f"{method}: {name}")


@pytest.mark.parametrize("method", knn.METHODS)
@pytest.mark.parametrize("same", [True, False])
def test_search_internals_exact_with_tiny_tiles(x64, same, method, monkeypatch):
  """Many blocks and chunks per block (block 7, chunk 5): the sweep's stopping rule,
  chunk masking and reordering, the k-d tree's small leaves (with padding, and with
  leaves of padding only in the counts), and the dense form's blocks (the accelerators'
  default, run here on CPU), must give a NumPy brute force's neighbours and counts."""
  # The tree ranks 8 leaves at first, so most query leaves also take the full ranking.
  monkeypatch.setattr(knn, "_TREE_CANDIDATES", 8)
  monkeypatch.setattr(knn, "_TREE_GROUP", 4)
  rng = np.random.default_rng(15)
  p = rng.normal(size=(300, 3))
  q = p if same else rng.normal(size=(260, 3))
  for norm, order in (("max", np.inf), ("euclidean", 2)):
    dist, idx = knn._knn_search(jnp.asarray(p), jnp.asarray(q), 4, norm, same, 7, None,
                                method=method, chunk=5)
    full = np.linalg.norm(p[:, None] - q[None], ord=order, axis=-1)
    if same:
      np.fill_diagonal(full, np.inf)
    np.testing.assert_allclose(dist, np.sort(full, axis=1)[:, :4], rtol=0, atol=1e-14)
    np.testing.assert_allclose(full[np.arange(300)[:, None], np.asarray(idx)], dist, atol=1e-14)
  radius = rng.uniform(0.1, 1.0, size=300)
  for strict in (True, False):
    got = knn._count_within(jnp.asarray(p), jnp.asarray(radius), strict, 2, None,
                            method=method, chunk=5)
    np.testing.assert_array_equal(got, _count(p, radius, strict))


def test_large_k_uses_top_k_and_float32_close_to_float64():
  rng = np.random.default_rng(13)
  x = rng.normal(size=(300, 2))
  with jax.enable_x64(True):
    h20 = ref_entropy(x, 20, "euclidean")
    assert abs(float(info.entropy_knn(x, k=20)) - h20) < 1e-10
    ref = float(info.mutual_information_ksg(x[:, 0], x[:, 1], k=3))
  assert abs(float(info.mutual_information_ksg(x[:, 0].astype(np.float32),
                                               x[:, 1].astype(np.float32), k=3)) - ref) < 1e-4


def test_ties_keep_ksg_finite_and_duplicates_raise():
  rng = np.random.default_rng(14)
  x = rng.integers(0, 3, size=(200, 1)).astype(float)  # heavy ties
  y = x + rng.integers(0, 2, size=(200, 1))
  assert np.isfinite(float(info.mutual_information_ksg(x, y, k=3)))
  assert np.isfinite(float(info.conditional_mutual_information_ksg(x, y, x, k=3)))
  with pytest.raises(ValueError, match="repeated more than k = 3 times"):
    info.entropy_knn(x, k=3)
  with pytest.raises(ValueError, match="at least k = 1 times in y"):
    info.kl_divergence_knn(np.vstack([rng.normal(size=(20, 1)), [[0.0]]]),
                           np.vstack([rng.normal(size=(5, 1)), [[0.0]]]), k=1)
  # Under jit the undefined estimate is nan (documented), never -inf.
  assert np.isnan(float(jax.jit(lambda a: info.entropy_knn(a, k=3))(x)))


def test_bad_input_raises_naming_the_argument():
  x = np.random.default_rng(0).normal(size=(10, 2))
  with pytest.raises(ValueError, match="x contains NaN"):
    info.entropy_knn(np.where(x > 1, np.nan, x))
  with pytest.raises(ValueError, match=r"k = 10 needs more than 10 samples"):
    info.entropy_knn(x, k=10)
  with pytest.raises(TypeError, match="k must be an int"):
    info.entropy_knn(x, k=2.0)
  with pytest.raises(ValueError, match="norm"):
    info.entropy_knn(x, norm="l1")
  with pytest.raises(ValueError, match=r"x must be \[N\] or \[N, d\]"):
    info.entropy_knn(x[None])
  with pytest.raises(ValueError, match="same number of rows"):
    info.mutual_information_ksg(x, x[:9])
  with pytest.raises(ValueError, match="variant"):
    info.mutual_information_ksg(x, x, variant=3)
  with pytest.raises(ValueError, match="z contains NaN"):
    info.conditional_mutual_information_ksg(x, x, np.full(10, np.inf))
  with pytest.raises(ValueError, match="history"):
    info.transfer_entropy_ksg(x[:, 0], x[:, 1], history=0)
  with pytest.raises(ValueError, match="too short"):
    info.transfer_entropy_ksg(x[:, 0], x[:, 1], history=6, lag=5)
  with pytest.raises(ValueError, match="same dimension"):
    info.kl_divergence_knn(x, x[:, :1])
  with pytest.raises(ValueError, match="block_size"):
    info.entropy_knn(x, block_size=0)
  with pytest.raises(TypeError, match="mesh"):
    info.entropy_knn(x, mesh="cpu")
  with pytest.raises(ValueError, match="base"):
    info.entropy_knn(x, base=1)
  with pytest.raises(ValueError, match="cov must be positive definite"):
    info.gaussian_entropy([[1.0, 2.0], [2.0, 1.0]])
  with pytest.raises(ValueError, match="symmetric"):
    info.gaussian_entropy([[1.0, 0.5], [0.1, 1.0]])
  with pytest.raises(ValueError, match="disjoint"):
    info.gaussian_mutual_information(np.eye(3), [0, 1], [1])
  with pytest.raises(ValueError, match="y_idx"):
    info.gaussian_mutual_information(np.eye(3), [0], [3])
