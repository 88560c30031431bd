"""Greedy minimum-entropy coupling and its lower bounds (entropylab.coupling.mec).

Independent references written here, in plain NumPy/Python:

* ``slow_greedy`` (in ``reference.py``): Kocaoglu et al. (AAAI 2017), Algorithm 1 as a
  loop over ``numpy.argmax`` (lowest index on ties) in the input's dtype; ours must
  return the identical steps.
* ``exact_mec_bits``: the exact minimum-entropy coupling of tiny supports by enumerating
  the vertices of the transportation polytope (see its docstring for why that is exact).
* ``slow_profile_bits``: the profile bound of Compton et al. (AISTATS 2023) evaluated
  interval by interval at midpoints.

Entropies are in bits throughout. Shapes are drawn from small fixed sets so that the
number of compilations (about a second each) stays small.
"""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from entropylab import coupling
from entropylab.coupling import mec
from tests.coupling.reference import bits, slow_greedy

LOG2E = math.log2(math.e)
COMPTON_GAP = LOG2E / math.e  # ~0.5307 bits, Compton et al. (AISTATS 2023)


# --------------------------------------------------------------------------- references


def to_dense(index, mass, sizes):
  joint = np.zeros(sizes, np.asarray(mass).dtype)
  np.add.at(joint, tuple(np.asarray(index).T), np.asarray(mass))
  return joint


def exact_mec_bits(p, q):
  """Exact minimum entropy (bits) over all couplings of ``p`` and ``q`` (n, m <= 4).

  Entropy is concave, so its minimum over the transportation polytope
  ``{M >= 0 : M 1 = p, M^T 1 = q}`` is attained at a vertex. A vertex is a basic
  feasible solution: its support is acyclic in the bipartite row/column graph, so it
  extends to a spanning tree of ``K_{n,m}`` (``n + m - 1`` cells), and on a spanning
  tree the marginals fix every cell (peel leaves: a row or column with one remaining
  cell puts all its remaining mass there). Solving every spanning tree and keeping the
  non-negative solutions therefore visits every vertex, and the minimum over them is
  the optimum, exact up to float rounding (about 1e-15).
  """
  n, m = len(p), len(q)
  cells = [(i, j) for i in range(n) for j in range(m)]
  best = math.inf
  for tree in itertools.combinations(cells, n + m - 1):
    parent = list(range(n + m))

    def find(a):
      while parent[a] != a:
        parent[a] = parent[parent[a]]
        a = parent[a]
      return a

    acyclic = True
    for i, j in tree:
      a, b = find(i), find(n + j)
      if a == b:
        acyclic = False
        break
      parent[a] = b
    if not acyclic:
      continue
    left = list(p) + list(q)
    edges = set(tree)
    value = {}
    while edges:
      for node in range(n + m):
        incident = [e for e in edges if (e[0] == node if node < n else e[1] == node - n)]
        if len(incident) == 1:
          i, j = incident[0]
          value[(i, j)] = left[node]
          left[i] -= value[(i, j)]
          left[n + j] -= value[(i, j)]
          edges.discard((i, j))
          break
    x = np.array(list(value.values()))
    if np.all(x >= -1e-12):
      best = min(best, bits(np.clip(x, 0.0, None)))
  return best


def slow_profile_bits(marginals):
  """Profile bound: integrate -log2 min_i F_i(s) over intervals, F_i at the midpoint."""
  atoms = [np.sort(np.asarray(m, np.float64)) for m in marginals]
  cums = [np.cumsum(a) for a in atoms]
  breaks = sorted({0.0, *(float(c) for cs in cums for c in cs)})
  total = 0.0
  for lo, hi in zip(breaks[:-1], breaks[1:]):
    s = 0.5 * (lo + hi)
    cap = min(a[min(int(np.searchsorted(c, s)), len(a) - 1)] for a, c in zip(atoms, cums))
    total += (hi - lo) * -math.log2(cap)
  return total


def dirichlet(rng, size, alpha=1.0, zeros=0.0):
  w = rng.gamma(alpha, size=size)
  w[rng.random(size) < zeros] = 0.0
  if w.sum() == 0:
    w[0] = 1.0
  return w / w.sum()


# --------------------------------------------------------------------------- identity


@settings(max_examples=30)
@given(st.sampled_from([(1, 4), (3, 9), (9, 3), (12, 31)]), st.integers(0, 2**31 - 1),
       st.sampled_from([0.3, 1.0, 4.0]), st.sampled_from([0.0, 0.3]))
def test_sparse_identical_to_slow_reference(shape, seed, alpha, zeros):
  rng = np.random.default_rng(seed)
  p, q = dirichlet(rng, shape[0], alpha, zeros), dirichlet(rng, shape[1], alpha, zeros)
  ref_index, ref_mass = slow_greedy([p, q])
  with jax.enable_x64(True):
    rows, cols, mass = (np.asarray(a) for a in coupling.greedy_mec_sparse(p, q))
  np.testing.assert_array_equal(mass, ref_mass)
  np.testing.assert_array_equal(rows, ref_index[:, 0])
  np.testing.assert_array_equal(cols, ref_index[:, 1])


@pytest.mark.parametrize("seed", range(4))
def test_dense_and_multi_identical_to_slow_reference(seed):
  rng = np.random.default_rng(100 + seed)
  p, q, r = dirichlet(rng, 6), dirichlet(rng, 11, 0.5), dirichlet(rng, 4, 2.0)
  with jax.enable_x64(True):
    joint = np.asarray(coupling.greedy_mec(p, q))
    joint3 = np.asarray(coupling.greedy_mec_multi([p, q, r]))
    index3, mass3 = (np.asarray(a) for a in coupling.greedy_mec_multi([p, q, r], sparse=True))
  np.testing.assert_array_equal(joint, to_dense(*slow_greedy([p, q]), (6, 11)))
  ref_index, ref_mass = slow_greedy([p, q, r])
  np.testing.assert_array_equal(index3, ref_index)
  np.testing.assert_array_equal(mass3, ref_mass)
  np.testing.assert_array_equal(joint3, to_dense(ref_index, ref_mass, (6, 11, 4)))


def test_float32_path_identical_to_float32_reference():
  rng = np.random.default_rng(7)
  p = dirichlet(rng, 12).astype(np.float32)
  q = dirichlet(rng, 31).astype(np.float32)
  index, mass = slow_greedy([p, q], dtype=np.float32)
  rows, cols, got = coupling.greedy_mec_sparse(p, q)
  assert got.dtype == jnp.float32
  np.testing.assert_array_equal(got, mass)
  np.testing.assert_array_equal(rows, index[:, 0])
  np.testing.assert_array_equal(cols, index[:, 1])


@pytest.mark.parametrize("k", [2, 3])
def test_tree_and_vectorised_kernels_identical_with_ties(k):
  """Both kernels on a batch that mixes random rows and rows full of exact ties."""
  rng = np.random.default_rng(k)
  sizes = [5, 8, 3][:k]
  batch = []
  for b in range(40):
    if b % 2:
      batch.append([dirichlet(rng, n) for n in sizes])
    else:  # dyadic masses: many equal residuals, all differences exact
      batch.append([rng.multinomial(16, np.ones(n) / n) / 16.0 for n in sizes])
  with jax.enable_x64(True):
    margs = [jnp.asarray(np.stack([row[i] for row in batch])) for i in range(k)]
    tree_index, tree_mass = jax.jit(mec._greedy_tree)(margs)
    vec_index, vec_mass = jax.jit(mec._greedy_dense)(margs)
    index, mass = (np.asarray(a) for a in coupling.greedy_mec_multi(margs, sparse=True))
  used = np.asarray(tree_mass) > 0
  np.testing.assert_array_equal(tree_mass, vec_mass)
  np.testing.assert_array_equal(np.asarray(tree_index)[used], np.asarray(vec_index)[used])
  for b, row in enumerate(batch):
    ref_index, ref_mass = slow_greedy(row)
    np.testing.assert_array_equal(mass[b], ref_mass)
    np.testing.assert_array_equal(index[b], ref_index)


# --------------------------------------------------------------------------- coupling


@pytest.mark.parametrize("n, m, zeros", [(40, 25, 0.0), (40, 25, 0.4), (1, 25, 0.0)])
def test_coupling_reproduces_marginals_on_few_cells(x64, n, m, zeros):
  rng = np.random.default_rng(n + m)
  p, q = dirichlet(rng, n, 0.5, zeros), dirichlet(rng, m, 0.5, zeros)
  joint = np.asarray(coupling.greedy_mec(p, q))
  rows, cols, mass = (np.asarray(a) for a in coupling.greedy_mec_sparse(p, q))
  assert np.all(joint >= 0) and np.count_nonzero(joint) <= n + m - 1
  np.testing.assert_allclose(joint.sum(1), p, rtol=0, atol=1e-12)
  np.testing.assert_allclose(joint.sum(0), q, rtol=0, atol=1e-12)
  assert np.all(np.diff(mass) <= 0)  # the greedy masses are non-increasing
  unused = mass == 0
  assert np.all(rows[unused] == 0) and np.all(cols[unused] == 0)
  assert np.count_nonzero(~unused) == np.count_nonzero(joint)  # every cell used once


def test_large_sparse_support_in_linear_memory(x64):
  """n = 10^5: a dense joint would need 5.6e9 cells; the sparse form needs 1.6e5."""
  rng = np.random.default_rng(3)
  n, m = 100_000, 56_000
  p, q = dirichlet(rng, n, 0.7), dirichlet(rng, m, 0.7)
  rows, cols, mass = (np.asarray(a) for a in jax.jit(coupling.greedy_mec_sparse)(p, q))
  assert mass.shape == (n + m - 1,) and np.all(mass >= 0)
  np.testing.assert_allclose(np.bincount(rows, mass, n), p, rtol=0, atol=1e-12)
  np.testing.assert_allclose(np.bincount(cols, mass, m), q, rtol=0, atol=1e-12)
  cells = rows[mass > 0].astype(np.int64) * m + cols[mass > 0]
  assert np.unique(cells).size == cells.size
  # the largest cell is min(max p, max q), as the first greedy step takes it
  assert mass[0] == min(p.max(), q.max())


def test_multi_marginals_dense_sparse_and_k2(x64):
  rng = np.random.default_rng(11)
  p, q, r = dirichlet(rng, 6), dirichlet(rng, 1), dirichlet(rng, 4, 0.3, 0.3)
  joint = np.asarray(coupling.greedy_mec_multi([p, q, r]))
  index, mass = (np.asarray(a) for a in coupling.greedy_mec_multi((p, q, r), sparse=True))
  assert joint.shape == (6, 1, 4) and index.shape == (6 + 1 + 4 - 2, 3)
  np.testing.assert_array_equal(joint, to_dense(index, mass, (6, 1, 4)))
  for axis, marg in enumerate((p, q, r)):
    others = tuple(a for a in range(3) if a != axis)
    np.testing.assert_allclose(joint.sum(others), marg, rtol=0, atol=1e-12)
  assert np.count_nonzero(joint) <= 6 + 1 + 4 - 2
  np.testing.assert_array_equal(coupling.greedy_mec_multi([p, r]), coupling.greedy_mec(p, r))


# --------------------------------------------------------------------------- jit / vmap


def test_jit_equals_eager(variant, x64):
  rng = np.random.default_rng(5)
  p, q, r = (jnp.asarray(dirichlet(rng, n)) for n in (6, 11, 4))
  eager = (coupling.greedy_mec(p, q), coupling.greedy_mec_sparse(p, q),
           coupling.greedy_mec_multi([p, q, r], sparse=True),
           coupling.majorization_lower_bound(p, q, r), coupling.profile_lower_bound(p, q, r),
           coupling.coupling_entropy(coupling.greedy_mec(p, q)))
  got = variant(lambda p, q, r: (
      coupling.greedy_mec(p, q), coupling.greedy_mec_sparse(p, q),
      coupling.greedy_mec_multi([p, q, r], sparse=True),
      coupling.majorization_lower_bound(p, q, r), coupling.profile_lower_bound(p, q, r),
      coupling.coupling_entropy(coupling.greedy_mec(p, q))))(p, q, r)
  for a, b in zip(jax.tree_util.tree_leaves(eager), jax.tree_util.tree_leaves(got)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-14, atol=0)


@pytest.mark.parametrize("batch", [3, 40])  # 40 rows take the vectorised kernel on CPU
def test_vmap_and_batch_axes_equal_python_loop(x64, batch):
  rng = np.random.default_rng(batch)
  p = np.stack([dirichlet(rng, 6) for _ in range(batch)])
  q = np.stack([dirichlet(rng, 11, 0.5) for _ in range(batch)])
  loop = np.stack([np.asarray(coupling.greedy_mec(p[b], q[b])) for b in range(batch)])
  np.testing.assert_array_equal(coupling.greedy_mec(p, q), loop)
  np.testing.assert_array_equal(jax.vmap(coupling.greedy_mec)(p, q), loop)
  np.testing.assert_array_equal(jax.jit(jax.vmap(coupling.greedy_mec))(p, q), loop)
  sparse = jax.vmap(coupling.greedy_mec_sparse)(p, q)
  for b in (0, batch - 1):
    for got, ref in zip(sparse, coupling.greedy_mec_sparse(p[b], q[b])):
      np.testing.assert_array_equal(got[b], ref)
  # leading batch axes of any rank, and a nested vmap, fold into one batch
  np.testing.assert_array_equal(
      coupling.greedy_mec(p[:2].reshape(1, 2, 6), q[:2].reshape(1, 2, 11)), loop[None, :2])
  nested = jax.vmap(jax.vmap(coupling.greedy_mec))(p[:2].reshape(2, 1, 6), q[:2].reshape(2, 1, 11))
  np.testing.assert_array_equal(nested, loop[:2, None])
  # an unbatched argument under vmap, and broadcasting batch axes
  fixed = np.stack([np.asarray(coupling.greedy_mec(p[b], q[0])) for b in range(batch)])
  np.testing.assert_array_equal(jax.vmap(coupling.greedy_mec, in_axes=(0, None))(p, q[0]), fixed)
  np.testing.assert_array_equal(coupling.greedy_mec(p, q[0]), fixed)
  bounds = jax.vmap(coupling.profile_lower_bound)(p, q)
  np.testing.assert_allclose(bounds, [slow_profile_bits([p[b], q[b]]) for b in range(batch)],
                             rtol=0, atol=1e-12)
  np.testing.assert_allclose(coupling.majorization_lower_bound(p, q),
                             [coupling.majorization_lower_bound(p[b], q[b]) for b in range(batch)],
                             rtol=1e-14)


# --------------------------------------------------------------------------- bounds


@settings(max_examples=30)
@given(st.sampled_from([(3, 9), (12, 31), (31, 31)]), st.integers(0, 2**31 - 1),
       st.sampled_from([0.1, 1.0, 10.0]))
def test_entropy_between_meet_and_meet_plus_log2e(shape, seed, alpha):
  """Compton (ISIT 2022): H(meet) <= H(greedy) <= H(meet) + log2 e; profile <= H(greedy)."""
  rng = np.random.default_rng(seed)
  p, q = dirichlet(rng, shape[0], alpha), dirichlet(rng, shape[1], alpha)
  with jax.enable_x64(True):
    h = bits(np.asarray(coupling.greedy_mec_sparse(p, q)[2]))
    meet = float(coupling.majorization_lower_bound(p, q))
    prof = float(coupling.profile_lower_bound(p, q))
  assert meet - 1e-12 <= h <= meet + LOG2E + 1e-12
  assert prof <= h + 1e-12
  assert max(bits(p), bits(q)) <= meet + 1e-12  # the meet is majorized by p and by q
  np.testing.assert_allclose(prof, slow_profile_bits([p, q]), rtol=0, atol=1e-12)


def test_three_marginal_bounds(x64):
  rng = np.random.default_rng(21)
  for _ in range(5):
    margs = [dirichlet(rng, n, 0.5) for n in (6, 11, 4)]
    h = bits(np.asarray(coupling.greedy_mec_multi(margs, sparse=True)[1]))
    meet = float(coupling.majorization_lower_bound(*margs))
    prof = float(coupling.profile_lower_bound(*margs))
    assert meet - 1e-12 <= h <= meet + LOG2E + 1e-12
    assert prof <= h + 1e-12
    np.testing.assert_allclose(prof, slow_profile_bits(margs), rtol=0, atol=1e-12)


@pytest.mark.parametrize("n, m", [(2, 2), (2, 3), (3, 3), (3, 4), (4, 4)])
def test_greedy_within_compton_gap_of_exact_optimum(x64, n, m):
  """Against the exact optimum: bounds <= OPT <= greedy <= OPT + log2(e)/e."""
  rng = np.random.default_rng(10 * n + m)
  worst = 0.0
  for trial in range(6 if n * m < 16 else 3):
    alpha = (0.3, 1.0, 3.0)[trial % 3]
    p, q = dirichlet(rng, n, alpha), dirichlet(rng, m, alpha)
    h = bits(np.asarray(coupling.greedy_mec_sparse(p, q)[2]))
    opt = exact_mec_bits(p, q)
    assert float(coupling.majorization_lower_bound(p, q)) <= opt + 1e-12
    assert float(coupling.profile_lower_bound(p, q)) <= opt + 1e-12
    assert opt <= h + 1e-12
    worst = max(worst, h - opt)
  assert worst <= COMPTON_GAP


def test_exact_optimum_reference_on_known_cases():
  # coupling p with itself: the diagonal, H(p), is optimal
  assert exact_mec_bits([0.5, 0.3, 0.2], [0.5, 0.3, 0.2]) == pytest.approx(bits([0.5, 0.3, 0.2]))
  # every cell is at most 1/4 when q is uniform on 4: OPT = 2 bits
  assert exact_mec_bits([0.5, 0.5], [0.25] * 4) == pytest.approx(2.0)
  # p = (1/2, 1/2), q = (2/3, 1/3): best is {1/2, 1/6, 1/3}
  assert exact_mec_bits([0.5, 0.5], [2 / 3, 1 / 3]) == pytest.approx(bits([1 / 2, 1 / 6, 1 / 3]))


def test_profile_bound_can_be_below_the_majorization_bound(x64):
  """Not an ordering: p = (0.526, 0.474), q = (4/7, 1/7, 1/7, 1/7), computed by hand.

  Meet: prefix minima (0.526, 5/7, 6/7, 1) -> (0.526, 5/7 - 0.526, 1/7, 1/7).
  Profile: 1/7 on [0, 3/7], 0.474 on (3/7, 0.474], 0.526 on (0.474, 1].
  """
  p, q = jnp.array([0.526, 0.474]), jnp.array([4, 1, 1, 1]) / 7.0
  meet = bits([0.526, 5 / 7 - 0.526, 1 / 7, 1 / 7])
  prof = (3 / 7 * math.log2(7) + (0.474 - 3 / 7) * -math.log2(0.474)
          + 0.526 * -math.log2(0.526))
  np.testing.assert_allclose(coupling.majorization_lower_bound(p, q), meet, rtol=1e-12)
  np.testing.assert_allclose(coupling.profile_lower_bound(p, q), prof, rtol=1e-12)
  assert prof < meet - 1e-3


@settings(max_examples=30)
@given(st.integers(0, 2**31 - 1), st.sampled_from([0.2, 1.0, 5.0]))
def test_meet_is_majorized_by_every_marginal(seed, alpha):
  rng = np.random.default_rng(seed)
  margs = [dirichlet(rng, n, alpha, 0.2) for n in (5, 9, 9)]
  with jax.enable_x64(True):
    meet = np.asarray(coupling.majorization_meet(*margs))
  assert meet.shape == (9,) and np.all(meet >= 0) and np.all(np.diff(meet) <= 1e-15)
  np.testing.assert_allclose(meet.sum(), 1.0, rtol=0, atol=1e-12)
  for m in margs:
    prefix = np.cumsum(np.pad(np.sort(m)[::-1], (0, 9 - len(m))))
    assert np.all(np.cumsum(meet) <= prefix + 1e-12)


# --------------------------------------------------------------------------- closed forms


def test_closed_forms(x64):
  p = jnp.array([0.5, 0.25, 0.125, 0.125])
  # p with itself: the diagonal, entropy H(p) = 1.75 bits
  np.testing.assert_array_equal(coupling.greedy_mec(p, p), np.diag(np.asarray(p)))
  np.testing.assert_allclose(coupling.coupling_entropy(coupling.greedy_mec(p, p)), 1.75,
                             rtol=1e-14)
  # with a point mass: the product p x e_1
  np.testing.assert_array_equal(coupling.greedy_mec(p, jnp.array([0.0, 1.0, 0.0])),
                                np.outer(np.asarray(p), [0.0, 1.0, 0.0]))
  # by hand: p = (0.5, 0.4, 0.1), q = (0.6, 0.2, 0.2). Steps: 0.5 on (0, 0); 0.2 on
  # (1, 1) (q ties at 0.2: lowest index); 0.2 on (1, 2); the last 0.1 on (2, 0).
  p, q = jnp.array([0.5, 0.4, 0.1]), jnp.array([0.6, 0.2, 0.2])
  joint = np.array([[0.5, 0, 0], [0, 0.2, 0.2], [0.1, 0, 0]])
  np.testing.assert_allclose(coupling.greedy_mec(p, q), joint, rtol=0, atol=1e-16)
  h = 0.5 * 1 + 2 * 0.2 * math.log2(5) + 0.1 * math.log2(10)
  np.testing.assert_allclose(coupling.coupling_entropy(coupling.greedy_mec(p, q)), h, rtol=1e-12)
  # meet: prefix minima of (0.5, 0.9, 1) and (0.6, 0.8, 1) -> (0.5, 0.3, 0.2)
  np.testing.assert_allclose(coupling.majorization_meet(p, q), [0.5, 0.3, 0.2], atol=1e-15)
  np.testing.assert_allclose(coupling.majorization_lower_bound(p, q), bits([0.5, 0.3, 0.2]),
                             rtol=1e-12)
  np.testing.assert_allclose(coupling.majorization_lower_bound(p, q, base=None),
                             bits([0.5, 0.3, 0.2]) * math.log(2), rtol=1e-12)
  # profile: min of (0.1, 0.4, 0.5) and (0.2, 0.2, 0.6) laid out increasingly:
  # 0.1 on [0, .1], 0.2 on (.1, .4], 0.4 on (.4, .5], 0.5 on (.5, 1]
  prof = 0.1 * math.log2(10) + 0.3 * math.log2(5) + 0.1 * math.log2(2.5) + 0.5
  np.testing.assert_allclose(coupling.profile_lower_bound(p, q), prof, rtol=1e-12)


def test_coupling_entropy_of_multi_joint_and_batches(x64):
  rng = np.random.default_rng(4)
  margs = [dirichlet(rng, n) for n in (6, 11, 4)]
  joint = coupling.greedy_mec_multi(margs)
  np.testing.assert_allclose(coupling.coupling_entropy(joint, ndim=3), bits(np.ravel(joint)),
                             rtol=1e-13)
  stacked = jnp.stack([joint[..., 0] / joint[..., 0].sum(), joint[..., 1] / joint[..., 1].sum()])
  np.testing.assert_allclose(coupling.coupling_entropy(stacked),
                             [bits(np.ravel(s)) for s in stacked], rtol=1e-13)


def test_half_precision_inputs_are_computed_in_float32():
  p = jnp.array([0.5, 0.25, 0.25], jnp.bfloat16)
  q = jnp.array([0.75, 0.25], jnp.float16)
  joint = coupling.greedy_mec(p, q)
  assert joint.dtype == jnp.float32
  np.testing.assert_array_equal(joint, [[0.5, 0.0], [0.25, 0.0], [0.0, 0.25]])


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: coupling.greedy_mec([0.6, -0.1, 0.5], [1.0]), ValueError, "p has negative"),
        (lambda: coupling.greedy_mec([0.5, 0.5], [0.5, np.nan]), ValueError, "q contains NaN"),
        (lambda: coupling.greedy_mec_sparse([0.5, 0.5], [0.5, 0.6]), ValueError,
         "q must sum to 1"),
        (lambda: coupling.greedy_mec(np.ones((2, 3)) / 3, np.ones((3, 4)) / 4), ValueError,
         "do not broadcast"),
        (lambda: coupling.greedy_mec_sparse(np.ones((2, 3)) / 3, np.ones((3, 4)) / 4),
         ValueError, "do not broadcast"),
        (lambda: coupling.greedy_mec_multi([[1.0], [0.5, 0.5], [0.7, 0.2]]), ValueError,
         r"marginals\[2\] must sum"),
        (lambda: coupling.greedy_mec_multi([[0.5, 0.5]]), ValueError, "at least 2"),
        (lambda: coupling.greedy_mec_multi(np.ones((2, 3)) / 3), TypeError, "sequence"),
        (lambda: coupling.greedy_mec([], [1.0]), ValueError, "p is empty"),
        (lambda: coupling.majorization_meet([0.5, 0.5]), ValueError, "at least two"),
        (lambda: coupling.majorization_lower_bound([0.5, 0.5], [1.5, -0.5]), ValueError,
         r"marginals\[1\] has negative"),
        (lambda: coupling.profile_lower_bound([0.5, 0.5], [1.0], [0.2, 0.2]), ValueError,
         r"more\[0\] must sum"),
        (lambda: coupling.profile_lower_bound([0.5, 0.5], [1.0], base=1), ValueError, "base"),
        (lambda: coupling.coupling_entropy(np.ones((2, 2)) / 2), ValueError,
         "joint must sum to 1 over its last 2 axes"),
    ],
)
def test_bad_input_raises_naming_the_argument(call, error, match):
  with pytest.raises(error, match=match):
    call()
