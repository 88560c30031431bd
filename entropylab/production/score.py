r"""Score matching and entropy production rates from a learned score.

For an SDE :math:`dx = b(x)\,dt + \sqrt{2D}\,dW` with diagonal diffusion ``D`` (zero
entries for noiseless coordinates) and stationary density :math:`\rho`, Boffi &
Vanden-Eijnden ("Deep learning probability flows and entropy production rates in
active matter", PNAS 2024) learn the score :math:`s \approx \nabla\log\rho` from
stationary samples and read the entropy production rate off the probability-flow
velocity :math:`v = b - Ds`:

.. math:: \dot S = E_\rho\Big[\sum_{i: D_i > 0} v_i^2 / D_i\Big],

the elliptic rate :math:`E[v^\top D^{-1} v]` when every coordinate is noisy and the
hypoelliptic :math:`\gamma^{-1}E|v_g|^2` for active particles with noise only in their
self-propulsion ``g``. Rates are in nats per unit time.

States are arrays of any shape ``S`` (``[d]``, ``[particles, d]``, ...); a function of
a state (``drift``, ``score``) maps one state to an array of the same shape, and the
estimators take a batch of stationary samples ``x: [B, *S]``. ``diffusion`` is a scalar
or an array broadcastable to ``S`` holding the diagonal of ``D``.

Losses (``score`` evaluated on samples, scalar results, units of inverse length squared):

* :func:`implicit_score_matching_loss` (Hyvarinen, JMLR 6 (2005), Theorem 1):
  :math:`E[\tfrac12|s|^2 + \nabla\cdot s]`, divergence exact (one forward-mode
  derivative per coordinate) or by Hutchinson's estimator;
* :func:`local_implicit_score_matching_loss`: the same on chosen parts of a local
  particle score (e.g. only the self-propulsions), with the exact divergence from
  :func:`self_divergence` in ``P d`` forward passes and optional particle subsets;
* :func:`local_denoising_score_matching_loss`: denoising on chosen parts of a local
  particle score (e.g. only the positions), on optional particle subsets;
* :func:`denoising_score_matching_loss` (Vincent, Neural Comput. 23 (2011); with
  the antithetic pair used by Boffi & Vanden-Eijnden): :math:`E|\sigma s(x + \sigma\xi) +
  \xi|^2`, whose minimiser is the score of :math:`\rho` smoothed at scale ``sigma``.

For active particles with noise in ``g`` only, :func:`hypoelliptic_entropy_production_bound`
turns the implicit loss of any ``g``-score into a lower bound on the rate, exact at the
score, which tells how close a learned score is; :func:`fit_linear_self_propulsion_score`
maximises it in closed form over a linear family of scores (from the moments of
:func:`linear_self_propulsion_moments`), and :func:`linear_self_propulsion_bound`
evaluates it on held-out samples; :func:`self_propulsion_bound_terms` gives its
per-particle terms from any field :math:`f = s_g + g` and divergences already computed.
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from entropylab.info import _checks

Array = jax.Array
StateFn = Callable[[Array], Array]


# --------------------------------------------------------------------------- checks


def _check_fn(fn, name: str) -> None:
  if not callable(fn):
    raise TypeError(f"{name} must be callable, got {type(fn).__name__}")


def _check_samples(x, name: str = "x") -> Array:
  arr = _checks.as_float_array(x, name)
  if arr.ndim < 2:
    raise ValueError(f"{name} must be a batch of states [B, *S] (B >= 1, at least one state "
                     f"axis), got shape {arr.shape}")
  if arr.shape[0] < 1:
    raise ValueError(f"{name} holds no samples")
  if _checks.is_concrete(arr) and not np.all(np.isfinite(np.asarray(arr))):
    raise ValueError(f"{name} has non-finite entries")
  return arr


def _check_diffusion(diffusion, state_shape: tuple) -> Array:
  d = _checks.as_float_array(diffusion, "diffusion")
  try:
    shape = np.broadcast_shapes(d.shape, state_shape)
  except ValueError:
    shape = None
  if shape != tuple(state_shape):
    raise ValueError(f"diffusion of shape {d.shape} must broadcast to the state shape "
                     f"{tuple(state_shape)}")
  if _checks.is_concrete(d):
    v = np.asarray(d)
    if not (np.all(np.isfinite(v)) and np.all(v >= 0) and np.any(v > 0)):
      raise ValueError("diffusion must be finite and non-negative with a positive entry")
  return jnp.broadcast_to(d, state_shape)


def _check_sigma(sigma, state_shape: tuple) -> None:
  arr = jnp.asarray(sigma)
  try:
    ok_shape = np.broadcast_shapes(arr.shape, state_shape) == tuple(state_shape)
  except ValueError:
    ok_shape = False
  if not ok_shape:
    raise ValueError(f"sigma of shape {arr.shape} must broadcast to the state shape "
                     f"{tuple(state_shape)}")
  if _checks.is_concrete(arr):
    v = np.asarray(arr)
    if not (np.all(np.isfinite(v)) and np.all(v > 0)):
      raise ValueError(f"sigma must be finite and positive, got {sigma!r}")


# --------------------------------------------------------------------------- derivatives


def jacobian_diagonal(fn: StateFn, x: Array) -> Array:
  r""":math:`\partial_i f_i(x)` for every coordinate ``i`` of one state ``x`` (shape
  ``S``), exactly: one forward-mode derivative per coordinate (``prod(S)`` of them)."""
  flat = x.reshape(-1)
  f = lambda z: fn(z.reshape(x.shape)).reshape(-1)
  basis = jnp.eye(flat.shape[0], dtype=x.dtype)
  cols = jax.vmap(lambda e: jax.jvp(f, (flat,), (e,))[1])(basis)
  return jnp.diagonal(cols).reshape(x.shape)


def _hutchinson_divergence(fn: StateFn, x: Array, key: Array, probes: int) -> Array:
  """Unbiased :math:`E_v[v^\\top J v]` with Rademacher ``v`` (Hutchinson 1990)."""

  def one(k):
    v = jax.random.rademacher(k, x.shape, x.dtype)
    return jnp.sum(v * jax.jvp(fn, (x,), (v,))[1])

  return jnp.mean(jax.vmap(one)(jax.random.split(key, probes)))


def _check_particle_samples(x) -> Array:
  x = _check_samples(x)
  if x.ndim != 4:
    raise ValueError(f"x must be [B, P, N, d] particle states, got shape {x.shape}")
  return x


def _check_query_size(query_size, n: int, key) -> int:
  """The number of particles scored per sample: ``query_size`` in ``[1, n]`` (needs a
  ``key`` to draw them) or ``n`` for ``None``."""
  if query_size is None:
    return n
  _checks.check_positive_int(query_size, "query_size")
  if query_size > n:
    raise ValueError(f"query_size must be <= N = {n}, got {query_size}")
  if key is None:
    raise ValueError("key is required with query_size")
  return query_size


def _check_parts(parts, num_parts: int) -> tuple:
  parts = tuple(int(p) for p in parts)
  if not parts or any(not 0 <= p < num_parts for p in parts):
    raise ValueError(f"parts must be indices in [0, {num_parts}), got {parts}")
  return parts


def self_divergence(fn: Callable[[Array], Array], shift_shape: tuple, dtype=jnp.float32,
                    parts: Optional[tuple] = None) -> Array:
  r"""Per-particle divergences of a local field, exactly, in ``P d`` forward passes.

  ``fn(shift) -> [P, M, d]`` must be a field of ``M`` particles (``P`` parts per particle,
  e.g. position and self-propulsion) in which particle ``m``'s output depends on
  ``shift[:, m]`` only, the shift entering as a displacement of that particle's own
  coordinates (``LocalTransformer``'s ``self_shift``). Then one forward derivative along
  ``e_{p,a}`` set for every particle at once returns each particle's own
  :math:`\partial f_{p,m,a} / \partial z_{p,m,a}`, so the ``P d`` derivatives give the
  trace of every diagonal block of the Jacobian: the divergence, without the ``P M d``
  derivatives of :func:`jacobian_diagonal`.

  Args:
    fn: ``shift [P, M, d] -> [P, M, d]``, evaluated at ``shift = 0``.
    shift_shape: ``(P, M, d)``.
    dtype: of the shift.
    parts: indices of the parts to differentiate (all ``P`` if ``None``).

  Returns:
    ``[len(parts), M]``: :math:`\sum_a \partial f_{p,m,a}/\partial z_{p,m,a}` per part
    ``p`` and particle ``m`` (units of ``f`` per unit of ``z``).
  """
  _check_fn(fn, "fn")
  shift_shape = tuple(shift_shape)
  if len(shift_shape) != 3 or any(int(v) < 1 for v in shift_shape):
    raise ValueError(f"shift_shape must be (P, M, d) of positive sizes, got {shift_shape}")
  num_parts, _, dim = shift_shape
  parts = tuple(range(num_parts)) if parts is None else _check_parts(parts, num_parts)
  zero = jnp.zeros(shift_shape, dtype)

  def block(p):
    def along(a):
      tangent = zero.at[p, :, a].set(1.0)
      return jax.jvp(fn, (zero,), (tangent,))[1][p, :, a]
    return sum(along(a) for a in range(dim))

  return jnp.stack([block(p) for p in parts])


# --------------------------------------------------------------------------- losses


def implicit_score_matching_loss(score: StateFn, x, key: Optional[Array] = None,
                                 probes: int = 1) -> Array:
  r"""Implicit score matching :math:`E_x[\tfrac12|s(x)|^2 + \nabla\cdot s(x)]`.

  Hyvarinen (2005), Theorem 1: equal, up to a constant independent of ``s``, to
  :math:`\tfrac12 E|s - \nabla\log\rho|^2`, so its minimiser is the score.

  Args:
    score: ``s(state) -> [*S]``.
    x: ``[B, *S]`` samples of :math:`\rho`.
    key: ``None`` for the exact divergence (``prod(S)`` forward-mode derivatives per
      sample); a PRNG key for Hutchinson's estimator with ``probes`` Rademacher probes.
    probes: probes per sample, ``>= 1``.

  Returns:
    ``[]`` the loss.
  """
  _check_fn(score, "score")
  x = _check_samples(x)
  _checks.check_positive_int(probes, "probes")

  def per_sample(xi, k):
    s = score(xi)
    div = (jnp.sum(jacobian_diagonal(score, xi)) if k is None
           else _hutchinson_divergence(score, xi, k, probes))
    return 0.5 * jnp.sum(s * s) + div

  if key is None:
    return jnp.mean(jax.vmap(lambda xi: per_sample(xi, None))(x))
  keys = jax.random.split(key, x.shape[0])
  return jnp.mean(jax.vmap(per_sample)(x, keys))


def local_implicit_score_matching_terms(score: Callable, state, parts: tuple = (1,),
                                        query: Optional[Array] = None) -> Array:
  r"""Per-particle implicit score matching terms
  :math:`\tfrac12|s_{p,i}|^2 + \nabla_{z_{p,i}}\cdot s_{p,i}` of one particle state.

  Args:
    score: ``score(state [P, N, d], query [M] or None, self_shift [P, M, d]) ->
      [P, M, d]``, the score of the queried particles, particle ``m``'s output depending
      on ``self_shift[:, m]`` as on a shift of its own coordinates (``LocalTransformer``
      with ``query`` and ``self_shift``).
    state: ``[P, N, d]`` one state.
    parts: the parts ``p`` (e.g. ``(1,)``: the self-propulsions).
    query: particle indices ``[M]`` (all ``N`` if ``None``).

  Returns:
    ``[len(parts), M]`` (units of inverse squared ``parts`` coordinates).
  """
  _check_fn(score, "score")
  state = _checks.as_float_array(state, "state")
  if state.ndim != 3:
    raise ValueError(f"state must be [P, N, d] particles, got shape {state.shape}")
  num_parts, n, dim = state.shape
  parts = _check_parts(parts, num_parts)
  m = n if query is None else query.shape[0]
  sel = jnp.asarray(parts)
  s = score(state, query, jnp.zeros((num_parts, m, dim), state.dtype))[sel]
  div = self_divergence(lambda sh: score(state, query, sh), (num_parts, m, dim), state.dtype,
                        parts)
  return 0.5 * jnp.sum(s * s, axis=-1) + div


def local_implicit_score_matching_loss(score: Callable, x, parts: tuple = (1,),
                                       query_size: Optional[int] = None,
                                       key: Optional[Array] = None) -> Array:
  r"""Implicit score matching on the ``parts`` of a local particle score, with the exact
  divergence from :func:`self_divergence`, optionally on random particle subsets.

  For particle states ``[P, N, d]`` (``P = 2``: positions and self-propulsions) the
  loss :math:`E_x\sum_{p \in parts}\sum_i[\tfrac12|s_{p,i}|^2 + \nabla_{z_{p,i}}
  \cdot s_{p,i}]` equals, up to a constant, :math:`\tfrac12 E\sum_{p\in parts}
  |s_p - \nabla_{z_p}\log\rho|^2` (Hyvarinen 2005, Theorem 1, integrating by parts in
  the ``parts`` coordinates only). With ``parts = (1,)`` it trains the self-propulsion
  score :math:`s_g`, all that the hypoelliptic entropy production
  :math:`\gamma^{-1}E|v_g|^2` needs (Boffi & Vanden-Eijnden, PNAS 2024), and it stays
  exact where the network is not smooth in the positions (``LocalTransformer``'s
  neighbour choice depends on positions only). With ``query_size = M`` each sample
  scores ``M`` particles drawn without replacement and scales the sum by ``N / M``: an
  unbiased estimate at ``O(M)`` network cost.

  Args:
    score: as in :func:`local_implicit_score_matching_terms`.
    x: ``[B, P, N, d]`` samples of :math:`\rho`.
    parts: the parts trained.
    query_size: ``M`` in ``[1, N]``, or ``None`` for every particle.
    key: PRNG key drawing the subsets; required with ``query_size``.

  Returns:
    ``[]`` the loss per sample (units of inverse squared ``parts`` coordinates).
  """
  _check_fn(score, "score")
  x = _check_particle_samples(x)
  _, num_parts, n, _ = x.shape
  parts = _check_parts(parts, num_parts)
  m = _check_query_size(query_size, n, key)

  def per_sample(xi, k):
    query = None if k is None else jax.random.choice(k, n, (m,), replace=False)
    return (n / m) * jnp.sum(local_implicit_score_matching_terms(score, xi, parts, query))

  if query_size is None:
    return jnp.mean(jax.vmap(lambda xi: per_sample(xi, None))(x))
  return jnp.mean(jax.vmap(per_sample)(x, jax.random.split(key, x.shape[0])))


def local_denoising_score_matching_loss(score: Callable, x, key: Array, sigma,
                                        parts: tuple = (0,),
                                        query_size: Optional[int] = None) -> Array:
  r"""Antithetic denoising score matching on the ``parts`` of a local particle score,
  optionally on random particle subsets.

  Noise :math:`\sigma\xi` is added to the ``parts`` coordinates of every particle and
  the loss :math:`E\,\tfrac12\sum_{p \in parts}(|\sigma s_p(x + \sigma\xi) + \xi_p|^2
  + |\sigma s_p(x - \sigma\xi) - \xi_p|^2)` (Vincent, Neural Comput. 23 (2011); the
  antithetic pair as in :func:`denoising_score_matching_loss`) is minimised by the
  ``parts`` score of :math:`\rho` smoothed in those coordinates only. With
  ``query_size = M`` each sample scores ``M`` particles drawn without replacement
  (``score(state, query)``, as ``LocalTransformer``'s ``query``) and scales the sum by
  ``N / M``: unbiased at ``O(M)`` network cost. With ``parts`` all parts and no subset
  it is :func:`denoising_score_matching_loss` at a scalar ``sigma``, with the noise drawn
  per sample.

  Args:
    score: ``score(state [P, N, d], query=None) -> [P, M, d]``, the outputs of the
      queried particles (all ``N`` for ``query=None``).
    x: ``[B, P, N, d]`` samples of :math:`\rho`.
    key: PRNG key for the subsets and the noise.
    sigma: scalar noise scale ``> 0`` (units of the ``parts`` coordinates).
    parts: the parts noised and trained (``(0,)``: the positions).
    query_size: ``M`` in ``[1, N]``, or ``None`` for every particle.

  Returns:
    ``[]`` the loss per sample (dimensionless).
  """
  _check_fn(score, "score")
  x = _check_particle_samples(x)
  _, num_parts, n, _ = x.shape
  parts = jnp.asarray(_check_parts(parts, num_parts))
  if key is None:
    raise ValueError("key is required (it draws the noise)")
  m = _check_query_size(query_size, n, key)
  if jnp.ndim(sigma) != 0:
    raise ValueError(f"sigma must be a scalar, got shape {jnp.shape(sigma)}")
  _check_sigma(sigma, ())
  sig = jnp.asarray(sigma, x.dtype)

  def per_sample(z, k):
    kq, kn = jax.random.split(k)
    query = (None if query_size is None
             else jax.random.choice(kq, n, (m,), replace=False))
    xi = jax.random.normal(kn, (len(parts),) + z.shape[1:], z.dtype)
    xi_q = xi if query is None else xi[:, query]
    total = 0.0
    for sign in (1.0, -1.0):
      out = score(z.at[parts].add(sign * sig * xi), query)[parts]
      total = total + 0.5 * jnp.sum((sig * out + sign * xi_q) ** 2)
    return (n / m) * total

  return jnp.mean(jax.vmap(per_sample)(x, jax.random.split(key, x.shape[0])))


def denoising_score_matching_loss(score: StateFn, x, key: Array, sigma,
                                  antithetic: bool = True) -> Array:
  r"""Denoising score matching :math:`E_{x,\xi}|\sigma s(x + \sigma\xi) + \xi|^2`.

  Vincent (2011), scaled by :math:`\sigma^2`: the minimiser is the score of
  :math:`\rho * N(0, \sigma^2 I)`, which tends to :math:`\nabla\log\rho` as
  :math:`\sigma \to 0`. ``sigma`` may differ per coordinate (an array broadcastable to
  the state shape, e.g. ``[2, 1, 1]`` for positions and self-propulsions on different
  scales); the products are then elementwise. With ``antithetic`` each noise draw is
  used with both signs,
  :math:`\tfrac12(|\sigma s(x+\sigma\xi) + \xi|^2 + |\sigma s(x-\sigma\xi) - \xi|^2)`,
  so the term :math:`2\sigma\,\xi \cdot s(x)`, odd in :math:`\xi` and the leading
  source of variance at small :math:`\sigma`, cancels exactly.

  Args:
    score: ``s(state) -> [*S]``.
    x: ``[B, *S]`` samples of :math:`\rho`.
    key: PRNG key for the noise.
    sigma: noise scale ``> 0`` (units of ``x``): a scalar or an array broadcastable to
      the state shape.
    antithetic: use each draw with both signs.

  Returns:
    ``[]`` the loss (dimensionless).
  """
  _check_fn(score, "score")
  x = _check_samples(x)
  _check_sigma(sigma, x.shape[1:])
  xi = jax.random.normal(key, x.shape, x.dtype)
  sig = jnp.asarray(sigma, x.dtype)
  s = jax.vmap(score)

  def term(sign):
    r = sig * s(x + sign * sig * xi) + sign * xi
    return jnp.sum(r.reshape(x.shape[0], -1) ** 2, axis=1)

  per_sample = 0.5 * (term(1.0) + term(-1.0)) if antithetic else term(1.0)
  return jnp.mean(per_sample)


# --------------------------------------------------------------------------- rates


def probability_flow_velocity(drift: StateFn, score: StateFn, diffusion) -> StateFn:
  r"""The probability-flow velocity :math:`v(x) = b(x) - D\,s(x)` as a function of one
  state (Boffi & Vanden-Eijnden, PNAS 2024); ``diffusion`` is the diagonal of
  ``D`` (scalar or broadcastable to the state shape)."""
  _check_fn(drift, "drift")
  _check_fn(score, "score")
  d = jnp.asarray(diffusion)
  return lambda x: drift(x) - d * score(x)


def entropy_production_rate(drift: StateFn, score: StateFn, diffusion, x,
                            local: bool = False, base: Optional[float] = None) -> Array:
  r"""Entropy production rate :math:`E_\rho[\sum_{i: D_i>0} v_i^2 / D_i]` from a score.

  Boffi & Vanden-Eijnden, PNAS 2024: the elliptic rate and its hypoelliptic form
  :math:`\gamma^{-1}E|v_g|^2`: coordinates with :math:`D_i = 0` contribute nothing.

  Args:
    drift: ``b(state) -> [*S]``.
    score: ``s(state) -> [*S]``, the (learned) stationary score.
    diffusion: diagonal of ``D``: a scalar or array broadcastable to ``S``, ``>= 0``.
    x: ``[B, *S]`` stationary samples.
    local: if true return the ``[*S]`` per-coordinate rates
      :math:`E[v_i^2] / D_i` (0 where :math:`D_i = 0`), which sum to the total; sum
      them over a particle's coordinates for its share.
    base: log base; ``None`` for nats per unit time, 2 for bits.

  Returns:
    ``[]`` (or ``[*S]``) rate in nats (or ``base`` units) per unit time.
  """
  x = _check_samples(x)
  d = _check_diffusion(diffusion, x.shape[1:])
  _checks.check_base(base)
  v = jax.vmap(probability_flow_velocity(drift, score, d))(x)
  inv = jnp.where(d > 0, 1.0 / jnp.where(d > 0, d, 1.0), 0.0)
  per_coordinate = jnp.mean(v * v, axis=0) * inv
  return _checks.to_base(per_coordinate if local else jnp.sum(per_coordinate), base)


def hypoelliptic_entropy_production_bound(score: Callable, x, gamma, local: bool = False,
                                           base: Optional[float] = None) -> Array:
  r"""A lower bound on the hypoelliptic entropy production of active particles from any
  self-propulsion score, estimated without bias from held-out samples.

  For self-propulsions :math:`dg = -\gamma g\,dt + \sqrt{2\gamma}\,dW` (active
  Ornstein-Uhlenbeck particles with noise in ``g`` only, Boffi & Vanden-Eijnden, PNAS
  2024) the rate is :math:`\dot S = \gamma E|g + s^*_g|^2` with :math:`s^*_g =
  \nabla_g\log\rho`. Writing :math:`L(s) = E[\tfrac12|s_g|^2 + \nabla_g\cdot s_g] =
  \tfrac12E|s_g - s^*_g|^2 - \tfrac12E|s^*_g|^2` (Hyvarinen 2005), and noting that
  :math:`s_g = -g` has :math:`L = E\tfrac12|g|^2 - d N`,

  .. math:: B(s) = 2\gamma\,[L(-g) - L(s)] = \dot S - \gamma E|s_g - s^*_g|^2 \le \dot S,

  with equality only at the exact score. The terms are per particle and the integration
  by parts runs over each particle's own ``g_i`` at fixed positions, so the per-particle
  terms bound the rate produced by particle ``i`` at every configuration of the others:
  binned over space they give a map of lower bounds. Samples must be independent of the
  data ``s`` was fitted on; beside the plug-in :math:`\gamma E|g + s_g|^2`, the gap
  shows how far ``s`` is from the score. Neither step uses stationarity: for samples of
  any density :math:`\rho_t` it bounds that density's instantaneous rate
  :math:`\gamma E_{\rho_t}|g + \nabla_g\log\rho_t|^2` (tested on non-stationary
  Gaussians of the trapped particle), unlike :func:`score_free_entropy_production`.

  Args:
    score: as in :func:`local_implicit_score_matching_terms` (part 1: ``g``).
    x: ``[B, 2, N, d]`` samples of the density whose rate is bounded.
    gamma: the relaxation rate :math:`\gamma > 0` of ``g``.
    local: return the per-particle terms ``[B, N]`` instead of the mean total.
    base: logarithm base of the result (``None``: nats; ``2``: bits).

  Returns:
    ``[]`` the bound (nats per unit time, or ``base`` units), or ``[B, N]`` its
    per-particle terms.
  """
  _check_fn(score, "score")
  x = _check_samples(x)
  if x.ndim != 4 or x.shape[1] != 2:
    raise ValueError(f"x must be [B, 2, N, d] active-particle states, got shape {x.shape}")
  if _checks.is_concrete(jnp.asarray(gamma)) and not float(gamma) > 0:
    raise ValueError(f"gamma must be > 0, got {gamma}")
  dim = x.shape[-1]

  def per_sample(xi):
    terms = local_implicit_score_matching_terms(score, xi, (1,))[0]     # [N]
    minus_g = 0.5 * jnp.sum(xi[1] * xi[1], axis=-1) - dim            # L(-g) terms
    return 2.0 * gamma * (minus_g - terms)

  per_particle = jax.lax.map(per_sample, x)
  return _checks.to_base(per_particle if local else jnp.mean(jnp.sum(per_particle, axis=1)),
                         base)


def self_propulsion_bound_terms(g, f, div, gamma):
  r"""Per-particle terms of :func:`hypoelliptic_entropy_production_bound` for the score
  :math:`s_g = -g + f` given its field and divergences:
  :math:`2\gamma(g_i\cdot f_i - \nabla_{g_i}\cdot f_i) - \gamma|f_i|^2` (Boffi &
  Vanden-Eijnden, PNAS 2024, with the implicit score matching loss of Hyvarinen 2005).

  Plain array arithmetic, so NumPy inputs stay NumPy (and float64) and JAX inputs stay
  JAX (jit- and vmap-able). Shapes are checked, and ``gamma`` where it is concrete.

  Args:
    g: ``[..., N, d]`` self-propulsions.
    f: ``[..., N, d]`` the field :math:`f = s_g + g` at the same states.
    div: ``[..., N]`` :math:`\nabla_{g_i}\cdot f_i`, each particle's divergence in its
      own self-propulsion.
    gamma: the relaxation rate :math:`\gamma > 0` of ``g``.

  Returns:
    ``[..., N]`` terms, nats per unit time; their sum over particles, averaged over
    states independent of ``f``'s fit, is a lower bound on the rate.
  """
  g_shape, f_shape, div_shape = np.shape(g), np.shape(f), np.shape(div)
  if len(g_shape) < 2 or f_shape != g_shape or div_shape != g_shape[:-1]:
    raise ValueError(f"need g [..., N, d], f of the same shape and div [..., N]; got g "
                     f"{g_shape}, f {f_shape}, div {div_shape}")
  if _checks.is_concrete(jnp.asarray(gamma)) and not float(gamma) > 0:
    raise ValueError(f"gamma must be > 0, got {gamma}")
  return gamma * (2.0 * ((g * f).sum(-1) - div) - (f * f).sum(-1))


def _basis_values(basis: Callable, state: Array) -> tuple[Array, Array]:
  """``basis(state)`` = ``(phi [K, N, d], div [K, N])``, with its shapes checked."""
  phi, div = basis(state)
  k, n, dim = phi.shape[0], state.shape[1], state.shape[2]
  if phi.shape != (k, n, dim) or div.shape != (k, n):
    raise ValueError(f"basis must return phi [K, N, d] = [K, {n}, {dim}] and div [K, {n}], "
                     f"got shapes {phi.shape} and {div.shape}")
  return phi, div


def _check_basis_samples(basis: Callable, x) -> Array:
  _check_fn(basis, "basis")
  x = _check_samples(x)
  if x.ndim != 4 or x.shape[1] != 2:
    raise ValueError(f"x must be [B, 2, N, d] active-particle states, got shape {x.shape}")
  return x


def linear_self_propulsion_moments(basis: Callable, x) -> tuple[Array, Array]:
  r"""Per sample, the moments of a linear family of self-propulsion scores
  :math:`s_g = -g + \sum_k c_k\phi_k` that fix its lower bound (see
  :func:`fit_linear_self_propulsion_score`): ``m[b, k]`` :math:`= \sum_i g_i\cdot
  \phi_{k,i} - \nabla_{g_i}\cdot\phi_{k,i}` and ``gram[b, k, l]`` :math:`= \sum_i
  \phi_{k,i}\cdot\phi_{l,i}`, so that sample ``b`` contributes :math:`\gamma(2c\cdot
  m_b - c^\top G_b c)` to the bound for any ``c``.

  Args:
    basis: as in :func:`fit_linear_self_propulsion_score`.
    x: ``[B, 2, N, d]`` samples.

  Returns:
    ``(m [B, K], gram [B, K, K])``.
  """
  x = _check_basis_samples(basis, x)

  def moments(state):
    phi, div = _basis_values(basis, state)
    terms = jnp.einsum("knd,nd->k", phi, state[1]) - jnp.sum(div, axis=1)
    return terms, jnp.einsum("knd,lnd->kl", phi, phi)

  return jax.lax.map(moments, x)


def fit_linear_self_propulsion_score(basis: Callable, x, rcond: Optional[float] = None
                                     ) -> Array:
  r"""The self-propulsion score :math:`s_g = -g + \sum_k c_k\phi_k` that maximises the
  lower bound of :func:`hypoelliptic_entropy_production_bound` on samples ``x``, in
  closed form: implicit score matching (Hyvarinen 2005) over a linear family.

  For active particles with noise in ``g`` only (Boffi & Vanden-Eijnden, PNAS 2024),
  the bound of :math:`f = s_g + g = \sum_k c_k\phi_k` is

  .. math:: B(c) = 2\gamma\,c\cdot m - \gamma\,c^\top G c,\quad
     m_k = E\Big[\sum_i g_i\cdot\phi_{k,i} - \nabla_{g_i}\cdot\phi_{k,i}\Big],\quad
     G_{kl} = E\Big[\sum_i \phi_{k,i}\cdot\phi_{l,i}\Big],

  maximised by :math:`c = G^{+}m` at :math:`B = \gamma\,m^\top G^{+}m`: the
  self-propulsion analogue of the thermodynamic uncertainty relation with a linear
  current basis. The maximum on the fitting samples is biased upwards; evaluate
  :func:`linear_self_propulsion_bound` on held-out samples for a bound.

  Args:
    basis: ``basis(state [2, N, d]) -> (phi [K, N, d], div [K, N])``: the functions
      :math:`\phi_k` of one state and, per particle, the divergence
      :math:`\nabla_{g_i}\cdot\phi_{k,i}` in its own self-propulsion (exact).
    x: ``[B, 2, N, d]`` samples (positions, self-propulsions).
    rcond: cut-off of the pseudo-inverse (``jnp.linalg.lstsq``), so that functions
      that vanish on the samples get coefficient 0.

  Returns:
    ``[K]`` coefficients (units of the inverse of ``phi`` times those of ``g``).
  """
  m, gram = linear_self_propulsion_moments(basis, x)
  return jnp.linalg.lstsq(jnp.mean(gram, axis=0), jnp.mean(m, axis=0), rcond=rcond)[0]


def linear_self_propulsion_bound(basis: Callable, coefficients, x, gamma, local: bool = False,
                                 base: Optional[float] = None) -> Array:
  r""":func:`hypoelliptic_entropy_production_bound` of the score
  :math:`s_g = -g + \sum_k c_k\phi_k`, from its basis (see
  :func:`fit_linear_self_propulsion_score`): per particle
  :math:`2\gamma(g_i\cdot f_i - \nabla_{g_i}\cdot f_i) - \gamma|f_i|^2`,
  :math:`f = \sum_k c_k\phi_k`. A lower bound on the rate of the density of ``x``
  when ``coefficients`` were fitted on other samples.

  Args:
    basis: as in :func:`fit_linear_self_propulsion_score`.
    coefficients: ``[K]``.
    x: ``[B, 2, N, d]`` samples.
    gamma: the relaxation rate :math:`\gamma > 0` of ``g``.
    local: return the per-particle terms ``[B, N]`` instead of the mean total.
    base: logarithm base of the result (``None``: nats; ``2``: bits).

  Returns:
    ``[]`` the bound (nats per unit time, or ``base`` units), or ``[B, N]`` its terms.
  """
  x = _check_basis_samples(basis, x)
  c = _checks.as_float_array(coefficients, "coefficients")
  if c.ndim != 1:
    raise ValueError(f"coefficients must be [K], got shape {c.shape}")
  if _checks.is_concrete(c) and not np.all(np.isfinite(np.asarray(c))):
    raise ValueError("coefficients has non-finite entries")
  if _checks.is_concrete(jnp.asarray(gamma)) and not float(gamma) > 0:
    raise ValueError(f"gamma must be > 0, got {gamma}")

  def per_sample(state):
    phi, div = _basis_values(basis, state)
    if phi.shape[0] != c.shape[0]:
      raise ValueError(f"coefficients has {c.shape[0]} entries, basis gives {phi.shape[0]}")
    return self_propulsion_bound_terms(state[1], jnp.einsum("k,knd->nd", c, phi), c @ div,
                                       gamma)

  per_particle = jax.lax.map(per_sample, x)
  return _checks.to_base(per_particle if local else jnp.mean(jnp.sum(per_particle, axis=1)),
                         base)


def score_free_entropy_production(drift: StateFn, diffusion, x, local: bool = False,
                                  base: Optional[float] = None) -> Array:
  r"""Entropy production rate from the drift alone, a cross-check of a learned score.

  Integrating by parts against the stationary density (:math:`E[b \cdot s] =
  -E[\nabla\cdot b]`, and :math:`E[v \cdot s] = 0` at stationarity) turns
  :math:`E[\sum_{i \in \mathcal N} v_i^2 / D_i]`, :math:`\mathcal N = \{i: D_i > 0\}`, into

  .. math:: \dot S = E\Big[\sum_{i\in\mathcal N} \big(b_i^2 / D_i + \partial_i b_i\big)
     - \sum_{i\notin\mathcal N} \partial_i b_i\Big],

  the elliptic :math:`E[b^\top D^{-1} b + \nabla\cdot b]` when every coordinate is noisy.
  Exact divergences: ``prod(S)`` forward-mode derivatives per sample. Needs samples of
  the stationary density, and a large ``B`` (the terms cancel in part). For samples of
  a density :math:`\rho_t` that is not stationary, the same steps give the rate of
  :math:`\rho_t` minus :math:`dH/dt` (since :math:`E[v\cdot s] = -dH/dt`), an
  overestimate while the entropy still falls.

  Args:
    drift: ``b(state) -> [*S]``.
    diffusion: diagonal of ``D``, as in :func:`entropy_production_rate`.
    x: ``[B, *S]`` stationary samples.
    local: if true return the ``[*S]`` per-coordinate terms
      :math:`E[b_i^2/D_i + \partial_i b_i]` (noisy ``i``) and
      :math:`E[-\partial_i b_i]` (noiseless ``i``), which sum to the rate. This split is
      the second form of a local density; it differs coordinate by coordinate from
      :func:`entropy_production_rate`'s ``local`` terms (the integration by parts
      holds for the sum), so compare the two forms particle by particle only as a
      diagnostic.
    base: log base; ``None`` for nats per unit time.

  Returns:
    ``[]`` (or ``[*S]``) rate in nats (or ``base`` units) per unit time.
  """
  _check_fn(drift, "drift")
  x = _check_samples(x)
  d = _check_diffusion(diffusion, x.shape[1:])
  _checks.check_base(base)
  noisy = d > 0
  inv = jnp.where(noisy, 1.0 / jnp.where(noisy, d, 1.0), 0.0)

  def per_sample(xi):
    b = drift(xi)
    jd = jacobian_diagonal(drift, xi)
    return b * b * inv + jnp.where(noisy, jd, -jd)

  terms = jnp.mean(jax.vmap(per_sample)(x), axis=0)
  return _checks.to_base(terms if local else jnp.sum(terms), base)


def stationarity_residual(drift: StateFn, score: StateFn, diffusion, x) -> Array:
  r""":math:`E_\rho[v \cdot s]`, zero for the exact stationary score (since
  :math:`\nabla\cdot(\rho v) = 0` gives :math:`E[v\cdot\nabla\log\rho] =
  -\int \log\rho\,\nabla\cdot(\rho v) = 0`). Compare it with :math:`E[|v||s|]` to judge
  a learned score; units of inverse time.

  Args:
    drift, score, diffusion, x: as in :func:`entropy_production_rate`.

  Returns:
    ``[]`` the residual.
  """
  x = _check_samples(x)
  d = _check_diffusion(diffusion, x.shape[1:])
  v_fn = probability_flow_velocity(drift, score, d)
  return jnp.mean(jax.vmap(lambda xi: jnp.sum(v_fn(xi) * score(xi)))(x))


__all__ = [
    "denoising_score_matching_loss",
    "entropy_production_rate",
    "hypoelliptic_entropy_production_bound",
    "implicit_score_matching_loss",
    "jacobian_diagonal",
    "local_denoising_score_matching_loss",
    "local_implicit_score_matching_loss",
    "local_implicit_score_matching_terms",
    "probability_flow_velocity",
    "score_free_entropy_production",
    "self_divergence",
    "stationarity_residual",
]
