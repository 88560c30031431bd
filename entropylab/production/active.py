r"""Interacting active Ornstein-Uhlenbeck particles (AOUP) in a periodic box.

The system of Boffi & Vanden-Eijnden ("Deep learning probability flows and entropy
production rates in active matter", PNAS 2024, their active Ornstein-Uhlenbeck
model), ``N`` particles in ``d``
dimensions with positions :math:`x_i` and self-propulsion :math:`g_i`:

.. math::
   dx_i = \Big[v_0 g_i + k \sum_{j \ne i} F(x_i - x_j) - A x_i\Big]dt + \sqrt{2\epsilon}\,dW_i,
   \qquad dg_i = -\gamma g_i\,dt + \sqrt{2\gamma}\,dW'_i,

with the soft repulsion :math:`F(r) = \mathrm{softplus}_\beta(2a - |r|)\,r/|r|`,
:math:`\mathrm{softplus}_\beta(u) = \log(1 + e^{\beta u})/\beta`, particle radius
``a``, minimum-image distances in the box :math:`[-L, L)^d`. The box follows from the
packing fraction :math:`\phi = N V_d(a) / (2L)^d` (:func:`box_half_width`). The
paper's motility-induced phase separation runs use :math:`v_0 = 0.025`,
:math:`\gamma = 10^{-4}`, :math:`\phi = 0.5`, :math:`\epsilon = 0`, :math:`\Delta t =
0.1`, :math:`k = 1`, :math:`\beta = 7.5`, :math:`A = 0`. Whether a dense phase then
coexists with a gas depends on the box in our runs: a slab of 70 % of the particles
(:func:`slab_configuration`) becomes one dense cluster at N = 4096 (still holding 0.62
of the particles in dense surroundings after 2 x 10^5 steps) and dissolves at N = 1024
(``benchmarks/mips_relaxation.py`` and its results).

Forces use a cell list (:func:`neighbor_list`): particles are binned into cells at
least ``cutoff`` wide, and each particle keeps at most ``max_neighbors`` partners
within ``cutoff`` from the ``3^d`` surrounding cells, so a force evaluation costs
``O(N K)``, not ``O(N^2)``. The softplus tail beyond ``cutoff = 2a + tail/beta`` is
below :math:`e^{-\mathrm{tail}}/\beta` and is dropped. The list is rebuilt, inside the
jitted loop, whenever a particle has moved more than half the ``skin`` since the last
build. Capacity overflows (a cell or a neighbour list too full) are counted and
reported, never silently truncated: :func:`simulate_aoup` raises on them.

States are ``[2, N, d]`` arrays: ``state[0]`` the positions, ``state[1]`` the
self-propulsions; the matching diagonal diffusion for
:mod:`entropylab.production.score` is :func:`aoup_diffusion`.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from entropylab.info import _checks
from entropylab.production import sde

Array = jax.Array


class AOUPParams(NamedTuple):
  """Parameters of the interacting AOUP system (all floats).

  Attributes:
    v0: self-propulsion speed.
    gamma: relaxation rate of the self-propulsion.
    epsilon: translational diffusion (0: noise only in ``g``, hypoelliptic).
    k: interaction strength.
    trap: harmonic trap strength ``A`` (0 in a periodic box).
    radius: particle radius ``a`` (contact at ``2a``).
    beta: softplus sharpness.
    half_width: box half width ``L`` (box ``[-L, L)^d``).
  """
  v0: float
  gamma: float
  epsilon: float
  k: float = 1.0
  trap: float = 0.0
  radius: float = 1.0
  beta: float = 7.5
  half_width: float = 10.0


class Neighbors(NamedTuple):
  """A neighbour list: ``index [N, K]`` (``N`` pads empty slots) and the positions it
  was built at; ``overflow`` counts particles or cells that did not fit."""
  index: Array
  built_at: Array
  overflow: Array


def box_half_width(n: int, packing_fraction: float, radius: float = 1.0,
                   dim: int = 2) -> float:
  r"""Half width ``L`` of the periodic box :math:`[-L, L)^d` holding ``n`` disks (or
  balls) of ``radius`` at ``packing_fraction`` :math:`\phi = n V_d(a) / (2L)^d`."""
  _checks.check_positive_int(n, "n")
  if not (0 < packing_fraction < 1):
    raise ValueError(f"packing_fraction must be in (0, 1), got {packing_fraction}")
  if not radius > 0:
    raise ValueError(f"radius must be positive, got {radius}")
  _checks.check_positive_int(dim, "dim")
  ball = math.pi ** (dim / 2) / math.gamma(dim / 2 + 1) * radius ** dim
  return 0.5 * (n * ball / packing_fraction) ** (1.0 / dim)


def minimum_image(diff: Array, half_width) -> Array:
  """Wraps coordinate differences into ``[-L, L)``: ``diff - 2L rint(diff / 2L)``."""
  return diff - 2.0 * half_width * jnp.round(diff / (2.0 * half_width))


def wrap_positions(x: Array, half_width) -> Array:
  """Positions folded back into the box ``[-L, L)``."""
  return jnp.mod(x + half_width, 2.0 * half_width) - half_width


def interaction_cutoff(params: AOUPParams, tail: float = 12.0) -> float:
  """Distance beyond which the repulsion is below ``exp(-tail) / beta``: ``2a + tail/beta``."""
  return 2.0 * params.radius + tail / params.beta


def _pair_force(diff: Array, params: AOUPParams) -> Array:
  """``F(r)`` for minimum-image differences ``[..., d]``; zero for ``r = 0`` (the
  particle itself and padding), with a gradient-safe norm."""
  r2 = jnp.sum(diff * diff, axis=-1)
  safe = r2 > 0
  r = jnp.sqrt(jnp.where(safe, r2, 1.0))
  mag = jax.nn.softplus(params.beta * (2.0 * params.radius - r)) / params.beta
  return jnp.where(safe[..., None], (mag / r)[..., None] * diff, 0.0)


def pair_forces_dense(x: Array, params: AOUPParams) -> Array:
  r""":math:`\sum_{j\ne i} F(x_i - x_j)` over all pairs, ``[N, d]``: the ``O(N^2)``
  reference for :func:`pair_forces`."""
  diff = minimum_image(x[:, None, :] - x[None, :, :], params.half_width)
  return jnp.sum(_pair_force(diff, params), axis=1)


def _cells_per_side(half_width: float, cutoff: float) -> int:
  return max(1, int(math.floor(2.0 * half_width / cutoff)))


def _default_max_per_cell(params: AOUPParams, cutoff: float, dim: int) -> int:
  """Twice the close-packed count of a cell of the list at ``cutoff``, at least 8."""
  width = 2.0 * params.half_width / _cells_per_side(params.half_width, cutoff)
  packed = width ** dim / (math.pi ** (dim / 2) / math.gamma(dim / 2 + 1)
                           * params.radius ** dim)
  return max(8, int(math.ceil(2 * packed)))


def neighbor_list(x: Array, params: AOUPParams, cutoff: float, max_neighbors: int,
                  max_per_cell: int) -> Neighbors:
  """Partners within ``cutoff`` (minimum image) of every particle, from a cell list.

  Args:
    x: ``[N, d]`` positions in the box.
    params: the system (for the box).
    cutoff: neighbour distance, including any skin.
    max_neighbors: ``K``, slots per particle.
    max_per_cell: particles a cell can hold.

  Returns:
    :class:`Neighbors` with ``index [N, K]`` (partners first, then ``N``), ``built_at =
    x`` and ``overflow``, the number of particles with more than ``K`` partners plus
    cells holding more than ``max_per_cell`` particles (0 when the list is exact).
  """
  if x.ndim != 2:
    raise ValueError(f"x must be [N, d] positions, got shape {x.shape}")
  if not (math.isfinite(float(cutoff)) and float(cutoff) > 0):
    raise ValueError(f"cutoff must be a finite positive distance, got {cutoff}")
  _checks.check_positive_int(max_neighbors, "max_neighbors")
  _checks.check_positive_int(max_per_cell, "max_per_cell")
  n, dim = x.shape
  side = _cells_per_side(params.half_width, cutoff)
  if side < 3:
    # Fewer than 3 cells per side: the 3^d stencil would visit cells twice; all pairs.
    cand = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), (n, n))
    cell_overflow = jnp.int32(0)
  else:
    width = 2.0 * params.half_width / side
    coords = jnp.clip(jnp.floor((x + params.half_width) / width).astype(jnp.int32), 0, side - 1)
    strides = side ** np.arange(dim)
    cell = jnp.sum(coords * strides, axis=1)
    order = jnp.argsort(cell).astype(jnp.int32)
    sorted_cell = cell[order]
    n_cells = side ** dim
    start = jnp.searchsorted(sorted_cell, jnp.arange(n_cells), side="left").astype(jnp.int32)
    stop = jnp.searchsorted(sorted_cell, jnp.arange(n_cells), side="right").astype(jnp.int32)
    cell_overflow = jnp.sum(stop - start > max_per_cell).astype(jnp.int32)
    offsets = np.array(np.meshgrid(*[[-1, 0, 1]] * dim, indexing="ij")).reshape(dim, -1).T
    nb_cells = jnp.sum(jnp.mod(coords[:, None, :] + offsets[None], side) * strides, axis=-1)
    slot = jnp.arange(max_per_cell, dtype=jnp.int32)
    pos = start[nb_cells][..., None] + slot                                 # [N, 3^d, C]
    ok = pos < stop[nb_cells][..., None]
    cand = jnp.where(ok, order[jnp.minimum(pos, n - 1)], n).reshape(n, -1)
  xp = jnp.concatenate([x, jnp.zeros((1, dim), x.dtype)])
  diff = minimum_image(x[:, None, :] - xp[cand], params.half_width)
  near = (jnp.sum(diff * diff, axis=-1) <= cutoff * cutoff) & (cand != n) \
      & (cand != jnp.arange(n)[:, None])
  count = jnp.sum(near, axis=1)
  # Partners first (stable), then padding.
  rank = jnp.argsort(~near, axis=1, stable=True)[:, :max_neighbors]
  index = jnp.where(jnp.take_along_axis(near, rank, axis=1),
                    jnp.take_along_axis(cand, rank, axis=1), n).astype(jnp.int32)
  if index.shape[1] < max_neighbors:
    index = jnp.pad(index, ((0, 0), (0, max_neighbors - index.shape[1])), constant_values=n)
  overflow = cell_overflow + jnp.sum(count > max_neighbors).astype(jnp.int32)
  return Neighbors(index, x, overflow)


def _partners(u: Array, index: Array) -> Array:
  """``u [N, ...]`` of each listed partner, ``[N, K, ...]``: zeros in padding slots
  (index ``N``)."""
  return jnp.concatenate([u, jnp.zeros_like(u[:1])])[index]


def _pair_differences(x: Array, neighbors: Neighbors, params: AOUPParams) -> Array:
  """Minimum-image ``x_i - x_j`` over the listed partners, ``[N, K, d]`` (padding slots
  hold ``x_i`` wrapped; mask them with ``neighbors.index < N``)."""
  return minimum_image(x[:, None, :] - _partners(x, neighbors.index), params.half_width)


def pair_forces(x: Array, neighbors: Neighbors, params: AOUPParams) -> Array:
  r""":math:`\sum_j F(x_i - x_j)` over the neighbour list, ``[N, d]``: ``O(N K)``."""
  diff = _pair_differences(x, neighbors, params)
  valid = (neighbors.index < x.shape[0])[..., None]
  return jnp.sum(jnp.where(valid, _pair_force(diff, params), 0.0), axis=1)


def aoup_drift(state: Array, params: AOUPParams, neighbors: Optional[Neighbors] = None
               ) -> Array:
  r"""Drift ``b(state)`` of the model above, ``[2, N, d]``: positions
  :math:`v_0 g + k\sum F - A x`, self-propulsions :math:`-\gamma g`. Without
  ``neighbors`` the forces are summed over all pairs (differentiable everywhere, for
  the divergences of :mod:`entropylab.production.score`)."""
  if state.ndim != 3 or state.shape[0] != 2:
    raise ValueError(f"state must be [2, N, d] (positions, self-propulsions), got shape "
                     f"{state.shape}")
  x, g = state[0], state[1]
  forces = pair_forces_dense(x, params) if neighbors is None else pair_forces(x, neighbors,
                                                                               params)
  return jnp.stack([params.v0 * g + params.k * forces - params.trap * x, -params.gamma * g])


def _pair_jacobian(diff: Array, params: AOUPParams) -> Array:
  r""":math:`\nabla F` at minimum-image differences ``[..., d]`` -> ``[..., d, d]``, by
  forward-mode differentiation of :func:`_pair_force` (0 at ``r = 0``)."""
  dim = diff.shape[-1]
  jac = jax.vmap(jax.jacfwd(lambda u: _pair_force(u, params)))(diff.reshape(-1, dim))
  return jac.reshape(diff.shape + (dim,))


def _check_positions(x: Array, params: AOUPParams) -> None:
  if x.ndim != 2:
    raise ValueError(f"x must be [N, d] positions, got shape {x.shape}")
  if not isinstance(params, AOUPParams) or all(_checks.is_concrete(v) for v in params):
    check_params(params)    # traced params (jit over a system) are left to the caller


def aoup_drift_blocks(x: Array, params: AOUPParams,
                      neighbors: Optional[Neighbors] = None) -> Array:
  r"""The diagonal blocks of the position drift's Jacobian, :math:`\partial b_{x_i} /
  \partial x_i = k\sum_{j\ne i}\nabla F(x_i - x_j) - A I`, ``[N, d, d]`` (inverse time).

  Exact (forward-mode derivatives of the force law of :func:`aoup_drift`). Without
  ``neighbors`` all pairs are summed (``O(N^2)``), else the neighbour list (``O(N K)``).

  Args:
    x: ``[N, d]`` positions.
    params: the system.
    neighbors: a :func:`neighbor_list` of ``x`` with cutoff at least
      :func:`interaction_cutoff`, or ``None``.

  Returns:
    ``[N, d, d]`` blocks.
  """
  _check_positions(x, params)
  n, dim = x.shape
  if neighbors is None:
    diff = minimum_image(x[:, None, :] - x[None, :, :], params.half_width)
    pair = _pair_jacobian(diff, params)
  else:
    diff = _pair_differences(x, neighbors, params)
    pair = jnp.where((neighbors.index < n)[..., None, None], _pair_jacobian(diff, params), 0.0)
  return params.k * jnp.sum(pair, axis=1) - params.trap * jnp.eye(dim, dtype=pair.dtype)


def aoup_drift_divergence(x: Array, params: AOUPParams,
                          neighbors: Optional[Neighbors] = None) -> Array:
  r"""Per-particle divergence of the position drift, :math:`\nabla_{x_i}\cdot b_{x_i} =
  k\sum_{j\ne i}(\nabla\cdot F)(x_i - x_j) - A d`, ``[N]`` (inverse time): the traces of
  :func:`aoup_drift_blocks`.

  Exact: the pair term differentiates the same force law as :func:`aoup_drift`; in
  ``d`` dimensions it is :math:`-\sigma(\beta(2a - r)) + (d - 1)\,
  \mathrm{softplus}_\beta(2a - r)/r`, about :math:`-0.45` for two particles at contact
  (``r = 2a``, :math:`\beta = 7.5`, ``d = 2``). Without ``neighbors`` all pairs are
  summed (``O(N^2)``), else the neighbour list (``O(N K)``). Arguments as in
  :func:`aoup_drift_blocks`.

  Returns:
    ``[N]`` divergences.
  """
  return jnp.trace(aoup_drift_blocks(x, params, neighbors), axis1=-2, axis2=-1)


class VelocityFeatures(NamedTuple):
  """Per-particle inputs for a self-propulsion score at ``epsilon = 0``
  (:func:`velocity_features`)."""
  velocity: Array       # [N, d]  u = b_x / (v0 sqrt(gamma))
  acceleration: Array   # [N, d]  a = (d b_x / d x) u
  blocks: Array         # [N, d, d] d b_x_i / d x_i (aoup_drift_blocks)


def velocity_features(state: Array, params: AOUPParams,
                      neighbors: Optional[Neighbors] = None) -> VelocityFeatures:
  r"""Each particle's scaled velocity and its rate of change along the position flow:
  the inputs in which the self-propulsion score of active particles without
  translational noise is simple.

  With :math:`\epsilon = 0` (Boffi & Vanden-Eijnden, PNAS 2024, their motility-induced
  phase separation runs), let :math:`u = b_x / (v_0\sqrt\gamma)` (``[N, d]``, units of
  square-root time: the position drift of :func:`aoup_drift` over the self-propulsion
  speed, over :math:`\sqrt\gamma`) and :math:`a = (\nabla_x b_x)\,u` (inverse
  square-root time), a forward derivative of the drift along ``u`` at fixed ``g``. For
  harmonic forces (a constant symmetric Jacobian :math:`J = \nabla_x b_x`, e.g. trapped
  particles, ``k = 0``) the stationary density
  has :math:`\Sigma_{xg} = -v_0 (J - \gamma)^{-1}` and :math:`\Sigma_{xx} = v_0^2
  J^{-1}(J - \gamma)^{-1}`, so ``g`` given ``x`` is Gaussian with mean :math:`-Jx/v_0`
  and covariance :math:`-\gamma (J - \gamma)^{-1}`, and the score is exactly

  .. math:: s^*_g = (J - \gamma)\,b_x / (v_0\gamma) = (a - \gamma u)/\sqrt\gamma,

  a function of the particle's own ``(u, a)`` (tested against the Lyapunov
  covariance). Its size, :math:`\sim\gamma^{-1/2}`, sits in :math:`u` and ``a``, which
  stay of order one as :math:`\gamma \to 0`, while in positions and ``g`` it lies in
  differences of order :math:`\sqrt\gamma`. Soft repulsion is not harmonic (its
  Jacobian has positive eigenvalues under compression), so for interacting particles
  these are inputs for a learned score, not a score.

  ``u_i`` depends on ``g_i`` alone, as :math:`g_i/\sqrt\gamma`; ``a`` on ``g`` as
  :math:`J g/\sqrt\gamma`, so the own block :math:`\partial a_i/\partial g_i` is
  ``blocks[i]`` :math:`/\sqrt\gamma`: what an exact per-particle divergence in ``g``
  needs when ``a_i`` is an input of particle ``i``'s own output only and ``u_j`` an
  input of its neighbours' (``LocalTransformer``'s ``self_features`` and ``features``).

  Args:
    state: ``[2, N, d]`` positions and self-propulsions.
    params: the system; needs ``v0 != 0``.
    neighbors: a :func:`neighbor_list` of the positions with cutoff at least
      :func:`interaction_cutoff`, or ``None`` (all pairs, ``O(N^2)``).

  Returns:
    :class:`VelocityFeatures` ``(velocity [N, d], acceleration [N, d], blocks [N, d,
    d])``.
  """
  if state.ndim != 3 or state.shape[0] != 2:
    raise ValueError(f"state must be [2, N, d] (positions, self-propulsions), got shape "
                     f"{state.shape}")
  _check_positions(state[0], params)
  if _checks.is_concrete(jnp.asarray(params.v0)) and float(params.v0) == 0:
    raise ValueError("params.v0 must be non-zero: the velocity is scaled by it")
  scale = 1.0 / (params.v0 * jnp.sqrt(params.gamma))
  drift_x = lambda x: aoup_drift(jnp.stack([x, state[1]]), params, neighbors)[0]
  b, acceleration = jax.jvp(drift_x, (state[0],), (drift_x(state[0]) * scale,))
  return VelocityFeatures(b * scale, acceleration,
                          aoup_drift_blocks(state[0], params, neighbors))


def own_velocity_features(features: VelocityFeatures, query: Optional[Array] = None,
                          shift_g: Optional[Array] = None, gamma: float = 1.0
                          ) -> tuple[Array, Array]:
  r"""The queried particles' ``(u, a)`` of :func:`velocity_features` as they are when
  each one's own ``g`` moves by ``shift_g``: :math:`u_m + \delta_m/\sqrt\gamma` and
  :math:`a_m + J_{mm}\delta_m/\sqrt\gamma` (exact, since ``u`` is linear in ``g`` and
  ``a = J u`` with ``J`` a function of the positions), the inputs through which a
  per-particle divergence in ``g`` is taken for Boffi & Vanden-Eijnden's active
  particles with noise in ``g`` only (PNAS 2024).

  Args:
    features: :func:`velocity_features` of the state (``[N, d]``, ``[N, d]``,
      ``[N, d, d]``).
    query: particle indices ``[M]`` (all ``N`` if ``None``).
    shift_g: ``[M, d]`` shift of each queried particle's own ``g``, or ``None``.
    gamma: the relaxation rate :math:`\gamma > 0` the features were scaled with.

  Returns:
    ``(u [M, d], a [M, d])``: units of square-root time and its inverse.
  """
  if _checks.is_concrete(jnp.asarray(gamma)) and not float(gamma) > 0:
    raise ValueError(f"gamma must be > 0, got {gamma}")
  q = jnp.arange(features.velocity.shape[0]) if query is None else query
  u, a = features.velocity[q], features.acceleration[q]
  if shift_g is None:
    return u, a
  if shift_g.shape != u.shape:
    raise ValueError(f"shift_g must be [M, d] = {u.shape} for the queried particles, got "
                     f"shape {shift_g.shape}")
  dg = shift_g / jnp.sqrt(gamma)
  return u + dg, a + jnp.einsum("mab,mb->ma", features.blocks[q], dg)


def _check_self_propulsion_only(params: AOUPParams) -> None:
  """The scores built on the velocity ``b_x / v0`` need noise in ``g`` only and a
  non-zero ``v0``."""
  check_params(params)
  if params.epsilon != 0:
    raise ValueError(f"params.epsilon must be 0 (noise in g only), got {params.epsilon}")
  if params.v0 == 0:
    raise ValueError("params.v0 must be non-zero: the velocity b_x / v0 is scaled by it")


def harmonic_self_propulsion_score(params: AOUPParams, max_neighbors: Optional[int] = None,
                                   max_per_cell: Optional[int] = None) -> Callable:
  r"""The self-propulsion score that is exact for harmonic forces, applied as it stands
  to any forces: :math:`s_g = (a - \gamma u)/\sqrt\gamma` from
  :func:`velocity_features`, with no parameters.

  For a constant symmetric position Jacobian :math:`J` (trapped particles, an elastic
  network) this is the stationary :math:`\nabla_g \log\rho` of Boffi &
  Vanden-Eijnden's active particles with :math:`\epsilon = 0` (PNAS 2024); for soft
  repulsion it uses the local :math:`J(x)` as if it were constant. A baseline that
  needs no training: :func:`entropylab.production.hypoelliptic_entropy_production_bound`
  of it is a valid lower bound on the rate for any forces, and shows how much of the
  rate the harmonic picture certifies (``benchmarks/velocity_features.py``).

  Args:
    params: the system; needs :math:`\epsilon = 0` and ``v0 != 0``.
    max_neighbors: build a :func:`neighbor_list` with this many slots per particle
      (``O(N K)``; partners beyond its capacities are dropped, which changes the score
      but keeps it a function of the state); ``None`` sums all pairs (``O(N^2)``).
    max_per_cell: particles a cell of that list can hold (default as in
      :func:`aoup_score_free_entropy_production`).

  Returns:
    ``s(state [2, N, d], query [M] or None, self_shift [2, M, d] or None) -> [2, M, d]``
    in the form that :func:`entropylab.production.local_implicit_score_matching_terms`
    takes: the ``g`` part is the score (inverse units of ``g``), the ``x`` part zero;
    ``self_shift[1]`` moves particle ``m``'s own ``g`` (exact divergences in ``g``).
  """
  _check_self_propulsion_only(params)
  if max_neighbors is not None:
    _checks.check_positive_int(max_neighbors, "max_neighbors")
  if max_per_cell is not None:
    _checks.check_positive_int(max_per_cell, "max_per_cell")
  params = AOUPParams(*(float(v) for v in params))
  root_gamma = math.sqrt(params.gamma)
  cutoff = interaction_cutoff(params)

  def score(state, query=None, self_shift=None):
    nb = None
    if max_neighbors is not None:
      capacity = max_per_cell or _default_max_per_cell(params, cutoff, state.shape[-1])
      nb = neighbor_list(state[0], params, cutoff, max_neighbors, capacity)
    u, a = own_velocity_features(velocity_features(state, params, nb), query,
                                 None if self_shift is None else self_shift[1], params.gamma)
    s_g = (a - params.gamma * u) / root_gamma
    return jnp.stack([jnp.zeros_like(s_g), s_g])

  return score


def dense_position_jacobian(x: Array, params: AOUPParams) -> Array:
  r"""The Jacobian :math:`J = \nabla_x b_x` of the position drift of :func:`aoup_drift`
  (Boffi & Vanden-Eijnden, PNAS 2024, their active Ornstein-Uhlenbeck model) over all
  pairs, as a matrix: :math:`J_{ij} = -k\nabla F(x_i - x_j)` for :math:`i \ne j` and
  the blocks of :func:`aoup_drift_blocks` on the diagonal.

  Assembled from the pair Jacobians in ``O(N^2 d^2)`` memory (``jax.jacfwd`` of the
  drift would hold ``N d`` tangents of every pair), differentiable in ``x``.

  Args:
    x: ``[N, d]`` positions.
    params: the system.

  Returns:
    ``[N d, N d]`` (inverse time), row ``(i, a)`` and column ``(j, b)`` at ``i d + a``
    and ``j d + b``; symmetric.
  """
  _check_positions(x, params)
  n, dim = x.shape
  pair = _pair_jacobian(minimum_image(x[:, None, :] - x[None, :, :], params.half_width),
                        params)                                     # [N, N, d, d], 0 at i = j
  own = params.k * jnp.sum(pair, axis=1) - params.trap * jnp.eye(dim, dtype=pair.dtype)
  blocks = -params.k * pair + jnp.eye(n, dtype=pair.dtype)[:, :, None, None] * own[:, None]
  return blocks.transpose(0, 2, 1, 3).reshape(n * dim, n * dim)


def slaved_mode_basis(params: AOUPParams, edges, order: int = 2) -> Callable:
  r"""Functions of a state in which the self-propulsion score of interacting active
  particles without translational noise is linear: the harmonic score and its
  slaving corrections, mode by mode of the position Jacobian, in bands of stiffness.

  With :math:`\epsilon = 0` (Boffi & Vanden-Eijnden, PNAS 2024, their motility-induced
  phase separation runs) let :math:`J = \nabla_x b_x` (``[Nd, Nd]``, symmetric: minus
  the Hessian of the pair energy, minus the trap) have eigenpairs :math:`(\lambda_q,
  q)`, and :math:`\beta_q = q\cdot b_x`. For harmonic forces the score
  (:func:`harmonic_self_propulsion_score`) is, mode by mode,
  :math:`s_g = -g + \sum_q q\,[(\lambda_q - \gamma)\beta_q/(v_0\gamma) + q\cdot g]`.
  With soft repulsion the configuration also moves along its soft modes, at speeds of
  order :math:`v_0`, and a stiff mode then carries a part of the drift that follows this
  motion rather than the noise. Along the flow at fixed ``g``,
  :math:`\dot\beta_q = \lambda_q\beta_q + \dot q\cdot b_x`, whose slaved solution is
  :math:`\beta_q^{\rm slow} = -\sum_{n\ge0}\lambda_q^{-n-1}\,d^n(\dot q\cdot b_x)/dt^n`;
  with :math:`\dot q\cdot b_x \approx q\cdot w/\lambda_q`, :math:`w = D^2 b_x[b_x,
  b_x]` (the rotation of the stiff eigenvectors), the first two terms are
  :math:`-q\cdot w/\lambda_q^2` and :math:`-q\cdot\dot w/\lambda_q^3`,
  :math:`\dot w = D^3 b_x[b_x, b_x, b_x] + 2 D^2 b_x[J b_x, b_x]`. Taking them out of
  :math:`\beta_q` adds :math:`q\,(q\cdot w)/(\lambda_q v_0\gamma)` and
  :math:`q\,(q\cdot\dot w)/(\lambda_q^2 v_0\gamma)` to the score (to leading order in
  :math:`\gamma/|\lambda_q|`). The basis holds these terms summed over the modes of
  each band, so that a fit
  (:func:`entropylab.production.fit_linear_self_propulsion_score`) gives each band
  its own weights (1 where the expansion holds), and modes with :math:`\lambda_q \ge`
  ``edges[-1]`` (free, sliding or unstable directions) keep :math:`s_g = -g`. Dense:
  ``O((N d)^3)`` per state (an eigendecomposition, the all-pairs Jacobian and its
  derivatives along :math:`b_x`), for systems of up to about a thousand particles.

  Args:
    params: the system; needs :math:`\epsilon = 0` and ``v0 != 0``.
    edges: ``[K]`` strictly increasing negative eigenvalues (inverse time): the bands
      :math:`(-\infty, e_0), [e_0, e_1), \ldots, [e_{K-2}, e_{K-1})`.
    order: slaving terms kept, 0, 1 or 2.

  Returns:
    ``basis(state [2, N, d]) -> (phi [(1 + order) K, N, d], div [(1 + order) K, N])``:
    ``phi[:K]`` the harmonic terms of the bands, ``phi[K:2K]`` the first slaving terms,
    ``phi[2K:]`` the second (units of ``g``), and each one's per-particle divergence
    :math:`\nabla_{g_i}\cdot\phi_{k,i}` (exact: the diagonal of :math:`P_b J/\gamma`,
    :math:`2 P_b J^{+} H(b_x)/\gamma` and :math:`P_b J^{+2}(3 D^2J[b_x, b_x] +
    2 H(J b_x) + 2 H(b_x) J)/\gamma`, :math:`H(u) = D J[u]`, summed over the particle's
    coordinates), the form that
    :func:`entropylab.production.fit_linear_self_propulsion_score` takes.
  """
  _check_self_propulsion_only(params)
  if order not in (0, 1, 2):
    raise ValueError(f"order must be 0, 1 or 2, got {order!r}")
  e = np.asarray(edges, dtype=np.float64)
  if e.ndim != 1 or e.size < 1:
    raise ValueError(f"edges must be a non-empty 1-D sequence, got shape {e.shape}")
  if not np.all(np.isfinite(e)) or not np.all(e < 0):
    raise ValueError(f"edges must be finite and negative (stable modes), got {e}")
  if np.any(np.diff(e) <= 0):
    raise ValueError(f"edges must be strictly increasing, got {e}")
  params = AOUPParams(*(float(v) for v in params))
  lower = np.concatenate([[-np.inf], e[:-1]])
  gamma, v0 = params.gamma, params.v0
  jacobian = lambda y: dense_position_jacobian(y, params)

  def basis(state):
    if state.ndim != 3 or state.shape[0] != 2:
      raise ValueError(f"state must be [2, N, d] (positions, self-propulsions), got shape "
                       f"{state.shape}")
    x, g = state[0], state[1]
    n, dim = x.shape
    b = aoup_drift(state, params)[0]
    jmat, hmat = jax.jvp(jacobian, (x,), (b,))           # J and H(b) = DJ[b]
    lam, q = jnp.linalg.eigh(0.5 * (jmat + jmat.T))
    masks = ((lam[None] >= lower[:, None]) & (lam[None] < e[:, None])).astype(lam.dtype)
    inv = jnp.where(lam < e[-1], 1.0 / jnp.where(lam < e[-1], lam, -1.0), 0.0)
    bf = b.reshape(-1)
    beta, g_q = q.T @ bf, q.T @ g.reshape(-1)
    phis = [(masks * ((lam - gamma) * beta / (v0 * gamma) + g_q)) @ q.T]  # [K, Nd] each
    divs = [(q * q) @ (masks * lam).T / gamma]                           # [Nd, K] each

    def slaving(vector, matrix, power):
      """Band terms q (q.vector) / lambda^power / (v0 gamma) and the diagonals of
      P_b J^-power matrix / (v0 gamma), matrix = d vector / d g."""
      weight = masks * inv ** power
      phis.append((weight * (q.T @ vector) / (v0 * gamma)) @ q.T)
      divs.append((q * (q.T @ matrix).T) @ weight.T / (v0 * gamma))

    if order >= 1:
      slaving(hmat @ bf, 2.0 * v0 * hmat, 1)
    if order >= 2:
      tangent = lambda y: jax.jvp(jacobian, (y,), (b,))[1]
      a3 = jax.jvp(tangent, (x,), (b,))[1]                # D^2 J[b, b]
      jb = jmat @ bf
      h_jb = jax.jvp(jacobian, (x,), (jb.reshape(n, dim),))[1]
      slaving(a3 @ bf + 2.0 * hmat @ jb, v0 * (3.0 * a3 + 2.0 * h_jb + 2.0 * hmat @ jmat), 2)
    phi = jnp.concatenate(phis).reshape(-1, n, dim)
    div = jnp.concatenate(divs, axis=1).T.reshape(-1, n, dim).sum(-1)
    return phi, div

  return basis


def _probe_colours(x: Array, params: AOUPParams, reach: float, period: int = 4
                   ) -> tuple[Array, Array]:
  r"""Colours for exact divergences by probing: particles of one colour are more than
  ``reach`` apart (minimum image), so one forward-mode derivative per colour and
  coordinate reads the diagonal of a Jacobian whose entries vanish beyond ``reach``.

  Cells at least ``reach / (period - 1)`` wide, their number per side a multiple of
  ``period``, take ``period^d`` colours in a periodic pattern, so that two cells of one
  colour have ``period - 1`` cells between them; a cell's particles, by index, take the
  next colours in steps of ``period^d``. When that would need ``N`` colours or more
  (small boxes), every particle is its own colour.

  Returns:
    ``(colour [N] int32, count [])``: colours ``0 .. count - 1``.
  """
  n, dim = x.shape
  side = period * int(math.floor(2.0 * params.half_width * (period - 1)
                                 / (reach * (1.0 + 1e-6) * period)))
  identity = (jnp.arange(n, dtype=jnp.int32), jnp.int32(n))
  if side < period:
    return identity
  width = 2.0 * params.half_width / side
  coords = jnp.clip(jnp.floor((wrap_positions(x, params.half_width) + params.half_width)
                              / width).astype(jnp.int32), 0, side - 1)
  cell = jnp.sum(coords * side ** np.arange(dim), axis=1)
  pattern = jnp.sum(jnp.mod(coords, period) * period ** np.arange(dim), axis=1)
  order = jnp.argsort(cell, stable=True)
  start = jnp.searchsorted(cell[order], cell, side="left")
  rank = jnp.zeros(n, jnp.int32).at[order].set(jnp.arange(n, dtype=jnp.int32)) - start
  colour = (pattern + period ** dim * rank).astype(jnp.int32)
  count = jnp.max(colour) + 1
  return tuple(jnp.where(count < n, a, b) for a, b in zip((colour, count), identity))


def local_slaved_mode_basis(params: AOUPParams, degree: int = 3, order: int = 3,
                            scale: Optional[float] = None, max_neighbors: int = 32,
                            max_per_cell: Optional[int] = None, probes_per_pass: int = 16
                            ) -> Callable:
  r"""The slaved-mode basis of :func:`slaved_mode_basis` with polynomial filters of the
  position Jacobian in place of its eigenvalue bands, and one slaving order more: local,
  ``O(N K)`` per function and no eigendecomposition, so it runs at any ``N`` and its
  coefficients carry over between system sizes.

  With :math:`J = \nabla_x b_x` (Boffi & Vanden-Eijnden, PNAS 2024, active particles
  with :math:`\epsilon = 0`), the vectors whose band projections make
  :func:`slaved_mode_basis`,

  .. math::
     h = \frac{(J - \gamma) b_x}{v_0\gamma} + g, \quad
     w_1 = \frac{w}{v_0\gamma}, \quad w_2 = \frac{\dot w}{v_0\gamma}, \quad
     w_3 = \frac{\ddot w}{v_0\gamma}, \quad w = D^2 b_x[b_x, b_x],

  with dots the derivatives along the flow at fixed ``g`` (:math:`\dot x = b_x`):
  :math:`\dot w = D^3 b_x[b_x^3] + 2 D^2 b_x[J b_x, b_x]` and :math:`\ddot w = D^4
  b_x[b_x^4] + 5 D^3 b_x[J b_x, b_x, b_x] + 2 D^2 b_x[w + J^2 b_x, b_x] + 2 D^2 b_x[J
  b_x, J b_x]` (the third slaving term, :math:`-q\cdot\ddot w/\lambda_q^4` in
  :math:`\beta_q`), are here filtered by the powers :math:`(J/\sigma)^p`, ``p = 0 ..
  degree``, so that a linear fit
  (:func:`entropylab.production.fit_linear_self_propulsion_score`) chooses for each
  vector a polynomial :math:`f(\lambda)` of the mode's eigenvalue, where the bands chose
  a step function (:math:`1`, :math:`1/\lambda`, :math:`1/\lambda^2` times band
  weights). Products with :math:`J` and :math:`D^m b_x` are contractions with the
  derivatives of the pair force at the pairs of a :func:`neighbor_list` at
  :func:`interaction_cutoff` (the softplus tail beyond it, below
  :math:`e^{-12}/\beta`, is dropped), so function ``p`` of particle ``i`` depends on the
  particles within ``p + max(1, order)`` contacts. Divergences are exact: one
  forward-mode derivative in ``g`` per colour and coordinate of a colouring in which
  particles of one colour are further apart than that reach (as many colours as the
  densest cell pattern needs, set by the density within the reach, not by ``N``; every
  particle its own colour in small boxes).

  On stationary MIPS states (``benchmarks/local_slaved_modes.py``), degree 3 with two
  slaving orders certifies as much of the rate as the 16 bands of
  :func:`slaved_mode_basis` with 12 coefficients in place of 48, and the third order
  adds to it where the self-propulsion is slowest.

  Args:
    params: the system; needs :math:`\epsilon = 0` and ``v0 != 0``.
    degree: highest power of :math:`J/\sigma`, ``>= 0``.
    order: slaving terms kept, 0 to 3.
    scale: :math:`\sigma > 0` (inverse time), for conditioning only (the span does not
      depend on it); default ``k + A`` (1 if both are 0).
    max_neighbors, max_per_cell: capacities of the neighbour list (partners beyond them
      are dropped, which changes the functions but keeps them functions of the state
      and the divergences exact); ``max_per_cell`` defaults as in
      :func:`aoup_score_free_entropy_production`.
    probes_per_pass: colour-coordinate probes of the divergence evaluated together
      (vectorised; memory grows with it).

  Returns:
    ``basis(state [2, N, d]) -> (phi [(1 + order)(degree + 1), N, d], div [same, N])``:
    ``phi[t (degree + 1) + p]`` is :math:`(J/\sigma)^p` times :math:`h`, :math:`w_1`,
    :math:`w_2`, :math:`w_3` for ``t = 0 .. order`` (units of ``g``), and ``div`` each
    one's :math:`\nabla_{g_i}\cdot\phi_{k,i}`, the form that
    :func:`entropylab.production.fit_linear_self_propulsion_score` takes.
  """
  _check_self_propulsion_only(params)
  if isinstance(degree, bool) or not isinstance(degree, int) or degree < 0:
    raise ValueError(f"degree must be an integer >= 0, got {degree!r}")
  if order not in (0, 1, 2, 3):
    raise ValueError(f"order must be 0, 1, 2 or 3, got {order!r}")
  _checks.check_positive_int(max_neighbors, "max_neighbors")
  _checks.check_positive_int(probes_per_pass, "probes_per_pass")
  if max_per_cell is not None:
    _checks.check_positive_int(max_per_cell, "max_per_cell")
  params = AOUPParams(*(float(v) for v in params))
  if scale is None:
    scale = params.k + params.trap if params.k + params.trap > 0 else 1.0
  if not (math.isfinite(float(scale)) and float(scale) > 0):
    raise ValueError(f"scale must be a finite positive number, got {scale}")
  scale, gamma, v0 = float(scale), params.gamma, params.v0
  cutoff = interaction_cutoff(params)
  reach = (degree + max(1, order)) * cutoff

  def basis(state):
    if state.ndim != 3 or state.shape[0] != 2:
      raise ValueError(f"state must be [2, N, d] (positions, self-propulsions), got shape "
                       f"{state.shape}")
    x = state[0]
    capacity = max_per_cell or _default_max_per_cell(params, cutoff, x.shape[-1])
    nb = neighbor_list(x, params, cutoff, max_neighbors, capacity)
    # Derivatives of the pair force at each listed pair, so that every product below is
    # a gather and a contraction: D^m F[u, ...]_i = k sum_j D^m F(x_i - x_j)[u_i - u_j, ...].
    n = x.shape[0]
    valid = nb.index < n
    diff = _pair_differences(x, nb, params)
    force = lambda r: _pair_force(r, params)
    tensors = []
    for _ in range(max(1, order + 1)):
      force = jax.jacfwd(force)
      tensors.append(jax.vmap(jax.vmap(force))(diff)
                     * valid.reshape(valid.shape + (1,) * (len(tensors) + 2)))
    t1, t2, t3, t4 = [params.k * t for t in tensors] + [None] * (4 - len(tensors))
    rel = lambda u: u[:, None, :] - _partners(u, nb.index)
    jac = lambda u: jnp.einsum("nkab,nkb->na", t1, rel(u)) - params.trap * u
    second = lambda u, w: jnp.einsum("nkabc,nkb,nkc->na", t2, rel(u), rel(w))
    third = lambda u, w, z: jnp.einsum("nkabcd,nkb,nkc,nkd->na", t3, rel(u), rel(w), rel(z))
    fourth = lambda u, w, z, y: jnp.einsum("nkabcde,nkb,nkc,nkd,nke->na", t4, rel(u), rel(w),
                                           rel(z), rel(y))

    b = aoup_drift(state, params, nb)[0]
    jb = jac(b)
    w = second(b, b) if order >= 1 else None

    def powers(vectors):
      out = []
      for v in vectors:
        for p in range(degree + 1):
          out.append(v)
          if p < degree:
            v = jac(v) / scale
      return jnp.stack(out)

    vectors = [(jb - gamma * b) / (v0 * gamma) + state[1]]
    if order >= 1:
      vectors.append(w / (v0 * gamma))
    if order >= 2:
      vectors.append((third(b, b, b) + 2.0 * second(b, jb)) / (v0 * gamma))
    if order >= 3:
      vectors.append((fourth(b, b, b, b) + 5.0 * third(jb, b, b)
                      + 2.0 * second(w + jac(jb), b) + 2.0 * second(jb, jb)) / (v0 * gamma))
    phi = powers(vectors)

    def derivative(t):
      """d phi along the self-propulsions t [N, d] (d b_x = v0 t)."""
      jt = jac(t)
      d_vectors = [jt / gamma]
      if order >= 1:
        d_vectors.append(2.0 * second(b, t) / gamma)
      if order >= 2:
        d_vectors.append((3.0 * third(b, b, t) + 2.0 * second(t, jb) + 2.0 * second(b, jt))
                         / gamma)
      if order >= 3:
        d_vectors.append((4.0 * fourth(b, b, b, t) + 5.0 * third(jt, b, b)
                          + 10.0 * third(jb, b, t) + 2.0 * second(2.0 * second(b, t) + jac(jt), b)
                          + 2.0 * second(w + jac(jb), t) + 4.0 * second(jt, jb)) / gamma)
      return powers(d_vectors)

    colour, count = _probe_colours(x, params, reach)
    dim = x.shape[-1]
    lanes = jnp.arange(probes_per_pass)

    def one_pass(i, div):
      probe = i * probes_per_pass + lanes                        # [P] (colour, coordinate)
      member = (colour[None] == (probe // dim)[:, None]) & (probe < count * dim)[:, None]
      axis = (jnp.arange(dim)[None] == (probe % dim)[:, None])
      tangent = (member[:, :, None] & axis[:, None, :]).astype(x.dtype)     # [P, N, d]
      d_phi = jax.vmap(derivative)(tangent)                                 # [P, F, N, d]
      own = jnp.sum(d_phi * axis[:, None, None, :], axis=-1)                # [P, F, N]
      return div + jnp.sum(jnp.where(member[:, None], own, 0.0), axis=0)

    passes = (count * dim + probes_per_pass - 1) // probes_per_pass
    div = lax.fori_loop(0, passes, one_pass, jnp.zeros(phi.shape[:2], phi.dtype))
    return phi, div

  return basis


def aoup_score_free_entropy_production(x, params: AOUPParams, local: bool = False,
                                       max_neighbors: Optional[int] = None,
                                       max_per_cell: Optional[int] = None,
                                       base: Optional[float] = None) -> Array:
  r"""Entropy production rate of the model above from stationary samples alone, with no
  score: the identity of :func:`entropylab.production.score_free_entropy_production`
  with exact per-particle divergences, ``O(N K)`` per state.

  Integrating by parts against the stationary density (:math:`E[b\cdot s] =
  -E[\nabla\cdot b]` and :math:`E[v\cdot s] = 0`), the rate of Boffi &
  Vanden-Eijnden (PNAS 2024), :math:`\dot S = \gamma^{-1}E|v_g|^2 + \epsilon^{-1}
  E|v_x|^2` (the last term only for :math:`\epsilon > 0`), with :math:`v = b - Ds`, is

  .. math:: \dot S = \sum_i E\big[T_i\big],\quad T_i = \gamma(|g_i|^2 - d) +
     \begin{cases} -\nabla_{x_i}\cdot b_{x_i} & \epsilon = 0,\\
     |b_{x_i}|^2/\epsilon + \nabla_{x_i}\cdot b_{x_i} & \epsilon > 0. \end{cases}

  With :math:`\epsilon = 0` and ``g`` stationary, :math:`E\,\gamma(|g_i|^2 - d) = 0`,
  so the rate is the mean phase-space contraction of the positions,
  :math:`-E[\nabla_x\cdot b_x]`: a configurational average, free of cancellation.
  For one trapped particle (``k = 0``) it is :math:`A d`, the closed form of
  :func:`entropylab.production.trapped_aoup`. The terms :math:`T_i` are a second
  per-particle density; they sum to the rate, but differ particle by particle from the
  plug-in terms :math:`\gamma^{-1}|v_{g_i}|^2` (the integration by parts holds for the
  sum). Continuous time: a simulation at step ``dt`` samples a slightly different
  density. Needs samples of the stationary density: for a density :math:`\rho_t` still
  relaxing it returns the rate of :math:`\rho_t` minus :math:`dH/dt` (tested on
  non-stationary trapped particles, where it is 5.5 times the rate, then a sixth of
  it), whereas :func:`entropylab.production.hypoelliptic_entropy_production_bound`
  holds at every time.

  Args:
    x: ``[B, 2, N, d]`` stationary states (positions, self-propulsions).
    params: the system.
    local: return the per-particle terms ``[B, N]`` instead of their mean total.
    max_neighbors: use a neighbour list with this many slots per particle (``O(N
      K)``; raises if it overflows); ``None`` sums all pairs (``O(N^2)``).
    max_per_cell: particles a cell of that list can hold (default: twice the
      close-packed count, at least 8).
    base: logarithm base of the result (``None``: nats; ``2``: bits).

  Returns:
    ``[]`` the rate (nats per unit time, or ``base`` units), or ``[B, N]`` its
    per-particle terms.
  """
  check_params(params)
  x = _checks.as_float_array(x, "x")
  if x.ndim != 4 or x.shape[1] != 2:
    raise ValueError(f"x must be [B, 2, N, d] active-particle states, got shape {x.shape}")
  if x.shape[0] < 1:
    raise ValueError("x holds no states")
  if _checks.is_concrete(x) and not np.all(np.isfinite(np.asarray(x))):
    raise ValueError("x has non-finite entries")
  if max_neighbors is not None:
    _checks.check_positive_int(max_neighbors, "max_neighbors")
  if max_per_cell is not None:
    _checks.check_positive_int(max_per_cell, "max_per_cell")
  _checks.check_base(base)
  params = AOUPParams(*(float(v) for v in params))
  dim = x.shape[-1]
  cutoff = interaction_cutoff(params)
  cell_capacity = max_per_cell or _default_max_per_cell(params, cutoff, dim)

  def per_sample(z):
    pos, g = z[0], z[1]
    nb = None if max_neighbors is None else neighbor_list(pos, params, cutoff, max_neighbors,
                                                          cell_capacity)
    div = aoup_drift_divergence(pos, params, nb)
    terms = params.gamma * (jnp.sum(g * g, axis=-1) - dim)
    if params.epsilon > 0:
      b_x = aoup_drift(z, params, nb)[0]
      terms = terms + jnp.sum(b_x * b_x, axis=-1) / params.epsilon + div
    else:
      terms = terms - div
    return terms, (jnp.int32(0) if nb is None else nb.overflow)

  terms, overflow = jax.lax.map(per_sample, x)
  if _checks.is_concrete(overflow) and int(jnp.sum(overflow)) > 0:
    raise ValueError(f"the neighbour list overflowed in {int(jnp.sum(overflow > 0))} of "
                     f"{x.shape[0]} states; raise max_neighbors (now {max_neighbors}) or "
                     f"max_per_cell (now {cell_capacity})")
  return _checks.to_base(terms if local else jnp.mean(jnp.sum(terms, axis=1)), base)


def shifted_score(network, params: AOUPParams):
  r"""The "shift" parametrisation of the score (Boffi & Vanden-Eijnden, PNAS 2024):
  :math:`s(z) = \mathrm{NN}(z) + (b_x(z)/\epsilon, -g)`, exact with
  :math:`\mathrm{NN} = 0` at :math:`v_0 = 0`, where the stationary density is
  :math:`\propto e^{-U(x)/\epsilon} N(g; 0, I)` and :math:`b_x = -\nabla U`; the
  network then learns only the activity's correction. With :math:`\mathrm{NN} = 0` the
  velocity :math:`v = b - Ds` vanishes for every :math:`v_0`, so the whole rate comes
  from the network. Needs :math:`\epsilon > 0`.

  Args:
    network: ``NN(state [2, N, d]) -> [2, N, d]``.
    params: the system (its all-pairs drift is used).

  Returns:
    ``s(state) -> [2, N, d]``.
  """
  check_params(params)
  if not params.epsilon > 0:
    raise ValueError("the shift parametrisation divides by params.epsilon, which is 0")

  def score(state):
    b = aoup_drift(state, params)
    return network(state) + jnp.stack([b[0] / params.epsilon, -state[1]])

  return score


def aoup_diffusion(params: AOUPParams) -> Array:
  """Diagonal diffusion for ``[2, N, d]`` states: ``[[[epsilon]], [[gamma]]]``."""
  return jnp.array([params.epsilon, params.gamma]).reshape(2, 1, 1)


def check_params(params: AOUPParams) -> None:
  """Raises :class:`ValueError` naming the first invalid field."""
  if not isinstance(params, AOUPParams):
    raise TypeError(f"params must be an AOUPParams, got {type(params).__name__}")
  rules = {"v0": lambda v: math.isfinite(v), "gamma": lambda v: v > 0,
           "epsilon": lambda v: v >= 0, "k": lambda v: v >= 0, "trap": lambda v: v >= 0,
           "radius": lambda v: v > 0, "beta": lambda v: v > 0,
           "half_width": lambda v: v > 0}
  for name, ok in rules.items():
    value = float(getattr(params, name))
    if not (math.isfinite(value) and ok(value)):
      raise ValueError(f"params.{name} has an invalid value {value}")


class SimulationResult(NamedTuple):
  """``states [n_saved, 2, N, d]``, ``rebuilds`` (neighbour-list builds) and
  ``overflow`` (summed capacity overflows; 0 for an exact run)."""
  states: Array
  rebuilds: Array
  overflow: Array


@functools.partial(jax.jit, static_argnames=("params", "dt", "n_steps", "save_every", "skin",
                                             "max_neighbors", "max_per_cell"))
def _simulate(keys, state0, start_step, *, params, dt, n_steps, save_every, skin,
              max_neighbors, max_per_cell) -> SimulationResult:
  """The jitted loop of :func:`simulate_aoup` for ``C`` chains (``keys [C]``, ``state0
  [C, 2, N, d]``); compiled once per system and shape, so resumed chunks (another
  ``start_step``) reuse it.

  The chains share one loop but not their neighbour lists: a chain's list is rebuilt
  when that chain has moved too far, exactly as if it ran alone. The rebuild sits under
  one ``lax.cond`` on "any chain stale" (then the stale chains take their new lists);
  vmapping a per-chain ``cond`` instead would turn it into a select that builds every
  chain's list at every step.
  """
  cutoff = interaction_cutoff(params) + skin
  build = lambda x: neighbor_list(x, params, cutoff, max_neighbors, max_per_cell)
  interacting = params.k != 0
  if not interacting:
    # No interactions: no neighbour list to build or keep.
    build = lambda x: Neighbors(jnp.zeros((x.shape[0], 0), jnp.int32), x, jnp.int32(0))
  build_all = jax.vmap(build)
  decay = math.exp(-params.gamma * dt)
  g_noise = math.sqrt(1.0 - decay * decay)
  x_noise = math.sqrt(2.0 * params.epsilon * dt)
  dt_a = jnp.asarray(dt, state0.dtype)

  def move(key, state, nbrs, t):
    """One step of one chain with its neighbour list."""
    x, g = state[0], state[1]
    drift_x = params.v0 * g - params.trap * x
    if interacting:
      drift_x = drift_x + params.k * pair_forces(x, nbrs, params)
    xi = jax.random.normal(jax.random.fold_in(key, t), state.shape, state.dtype)
    x_new = wrap_positions(x + drift_x * dt_a + x_noise * xi[0], params.half_width)
    g_new = decay * g + g_noise * xi[1]
    return jnp.stack([x_new, g_new])

  def step(carry, t):
    state, nbrs, rebuilds, overflow = carry
    if interacting:
      x = state[:, 0]
      moved = minimum_image(x - nbrs.built_at, params.half_width)
      stale = jnp.max(jnp.sum(moved * moved, axis=-1), axis=-1) > (0.5 * skin) ** 2  # [C]

      def refresh():
        fresh = build_all(x)
        pick = lambda new, old: jnp.where(stale.reshape((-1,) + (1,) * (new.ndim - 1)),
                                          new, old)
        return jax.tree.map(pick, fresh, nbrs)

      nbrs = lax.cond(jnp.any(stale), refresh, lambda: nbrs)
      rebuilds = rebuilds + stale.astype(jnp.int32)
      overflow = overflow + jnp.where(stale, nbrs.overflow, 0)
    state = jax.vmap(move, in_axes=(0, 0, 0, None))(keys, state, nbrs, t)
    return (state, nbrs, rebuilds, overflow)

  def block(carry, b):
    first = start_step + b * save_every
    carry = lax.fori_loop(0, save_every, lambda i, c: step(c, first + i), carry)
    return carry, carry[0]

  nbrs = build_all(state0[:, 0])
  chains = state0.shape[0]
  init = (state0, nbrs, jnp.full((chains,), 1 if interacting else 0, jnp.int32), nbrs.overflow)
  (_, _, rebuilds, overflow), states = lax.scan(block, init, jnp.arange(n_steps // save_every))
  return SimulationResult(jnp.swapaxes(states, 0, 1), rebuilds, overflow)


def simulate_aoup(key: Array, state0, params: AOUPParams, dt: float, n_steps: int,
                  save_every: int = 1, start_step: int = 0, skin: float = 0.5,
                  max_neighbors: int = 32, max_per_cell: Optional[int] = None,
                  check: bool = True, one_loop: Optional[bool] = None) -> SimulationResult:
  r"""Integrates the model above: Euler-Maruyama in ``x`` (folded into the box), the exact
  Ornstein-Uhlenbeck update :math:`g' = e^{-\gamma\Delta t} g +
  \sqrt{1 - e^{-2\gamma\Delta t}}\,\xi` in ``g``. Step ``t`` draws its noise from
  ``fold_in(key, start_step + t)``, so split runs reproduce a whole one.

  Independent chains: ``state0 [C, 2, N, d]`` runs ``C`` chains. Chain ``c`` draws its
  noise from ``key[c]`` when ``key`` holds ``C`` keys, else from ``fold_in(key, c)``, and
  keeps its own neighbour list. With ``one_loop`` the chains advance together in one
  compiled loop (fewer, larger kernels: the choice for accelerators, where it is the
  default); without, one after another (the CPU default: there the one loop ran 4 chains
  at 0.56x the speed of separate runs, ``benchmarks/results/bench_production_cpu.md``).
  Either way a chain gives the states of its lone run with the same key: bit for bit one
  after another, and up to float rounding in one loop (XLA may order a batched force sum
  differently).

  Args:
    key: PRNG key, or ``[C]`` keys (one per chain).
    state0: ``[2, N, d]`` initial positions (in the box) and self-propulsions, or
      ``[C, 2, N, d]`` for ``C`` independent chains.
    params: the system.
    dt: time step ``> 0``.
    n_steps: steps, a multiple of ``save_every``.
    save_every: keep every ``save_every``-th state.
    start_step: global index of the first step.
    skin: extra neighbour-list distance; the list is rebuilt once a particle moves
      more than ``skin / 2``.
    max_neighbors: partner slots per particle.
    max_per_cell: particles per cell (default: twice the close-packed count, at least 8).
    check: raise :class:`ValueError` after the run if a capacity overflowed, and
      :class:`FloatingPointError` (naming the first saved step) on a non-finite state.
    one_loop: run chains in one loop (default: on accelerators, not on CPU).

  Returns:
    :class:`SimulationResult` with ``states [n_steps // save_every, 2, N, d]`` (with
    chains: ``[C, n_steps // save_every, 2, N, d]``, and ``rebuilds``, ``overflow`` per
    chain).
  """
  check_params(params)
  state0 = _checks.as_float_array(state0, "state0")
  if state0.ndim not in (3, 4) or state0.shape[-3] != 2:
    raise ValueError(f"state0 must be [2, N, d] or [chains, 2, N, d], got shape "
                     f"{state0.shape}")
  chains = state0.shape[0] if state0.ndim == 4 else None
  key = jnp.asarray(key)
  if not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
    key = jax.random.wrap_key_data(key)  # raw uint32 keys (jax.random.PRNGKey)
  if chains is None and key.shape != ():
    raise ValueError(f"key must be a single key for state0 [2, N, d], got shape {key.shape}")
  if chains is not None and key.shape not in ((), (chains,)):
    raise ValueError(f"key must be a single key or {chains} keys (one per chain), got "
                     f"shape {key.shape}")
  sde.check_time_step(dt)
  for name, v in (("n_steps", n_steps), ("save_every", save_every),
                  ("max_neighbors", max_neighbors)):
    _checks.check_positive_int(v, name)
  if n_steps % save_every:
    raise ValueError(f"n_steps ({n_steps}) must be a multiple of save_every ({save_every})")
  if not skin > 0:
    raise ValueError(f"skin must be positive, got {skin}")
  n, dim = state0.shape[-2:]
  cutoff = interaction_cutoff(params) + skin
  if max_per_cell is None:
    max_per_cell = _default_max_per_cell(params, cutoff, dim)
  params = AOUPParams(*(float(v) for v in params))
  static = dict(params=params, dt=float(dt), n_steps=int(n_steps),
                save_every=int(save_every), skin=float(skin),
                max_neighbors=int(max_neighbors), max_per_cell=int(max_per_cell))
  alone = lambda k, s: SimulationResult(
      *(v[0] for v in _simulate(k[None], s[None], jnp.int32(start_step), **static)))
  if chains is None:
    result = alone(key, state0)
  else:
    keys = key if key.shape else jax.vmap(lambda c: jax.random.fold_in(key, c))(
        jnp.arange(chains))
    if one_loop is None:
      one_loop = next(iter(state0.devices())).platform != "cpu"
    if one_loop:
      result = _simulate(keys, state0, jnp.int32(start_step), **static)
    else:
      runs = [alone(keys[c], state0[c]) for c in range(chains)]
      result = SimulationResult(*(jnp.stack(v) for v in zip(*runs)))
  if check:
    overflow = int(np.sum(np.asarray(result.overflow)))
    if overflow > 0:
      raise ValueError(f"neighbour-list capacity overflowed {overflow} times; "
                       f"raise max_neighbors (now {max_neighbors}) or max_per_cell (now "
                       f"{max_per_cell})")
    states = np.asarray(result.states)
    finite = np.all(np.isfinite(states.reshape(states.shape[:-3] + (-1,))), axis=-1)
    if not finite.all():
      # The first saved state that is not finite, over the chains.
      finite = finite.reshape(-1, finite.shape[-1])
      first_bad = int(np.min(np.where(finite.all(-1), finite.shape[-1],
                                      np.argmin(finite, axis=-1))))
      bad_step = start_step + (first_bad + 1) * save_every
      raise FloatingPointError(f"non-finite state at step {bad_step} (dt={dt})")
  return result


def random_configuration(key: Array, n: int, params: AOUPParams, dim: int = 2,
                         spread: Optional[float] = None) -> Array:
  """``[2, N, d]`` initial state: standard normal self-propulsions (the stationary law of
  ``g``) and positions uniform in the box, or, with ``spread``, normal around the box
  centre with standard deviation ``spread * L`` in each coordinate, folded into the box.

  ``spread = 0.5`` is the start of the MIPS data generation in Boffi &
  Vanden-Eijnden's code. At the paper's parameters, whether such a clump stays dense
  depends on the box: at N = 1024 it has spread out within 2 x 10^4 steps
  (``benchmarks/results/mips_relaxation_cpu_n1024.md``); at N = 4096 it keeps 0.46 of
  the particles in dense surroundings after 4 x 10^4 steps, where a uniform start has
  0.28 (``mips_relaxation_cpu_clump_slab_uniform_n4096.md``).
  """
  _checks.check_positive_int(n, "n")
  _checks.check_positive_int(dim, "dim")
  if spread is not None and not (math.isfinite(float(spread)) and float(spread) > 0):
    raise ValueError(f"spread must be a finite positive number or None, got {spread}")
  kx, kg = jax.random.split(key)
  if spread is None:
    x = jax.random.uniform(kx, (n, dim), minval=-params.half_width, maxval=params.half_width)
  else:
    x = wrap_positions(spread * params.half_width * jax.random.normal(kx, (n, dim)),
                       params.half_width)
  return jnp.stack([x, jax.random.normal(kg, (n, dim))])


def slab_configuration(key: Array, n: int, params: AOUPParams, dense_share: float = 0.7,
                       spacing: Optional[float] = None) -> Array:
  r"""``[2, N, 2]`` initial state for coexistence runs: a dense slab and a gas.

  For the MIPS system of Boffi & Vanden-Eijnden (PNAS 2024) described above.
  ``round(dense_share * N)`` particles (rounded to whole rows) sit on a triangular
  lattice that fills the periodic box along ``y`` and is centred in ``x``; the rest are
  uniform in the strip outside the slab. Self-propulsions are standard normal (their
  stationary law), so the slab starts with no preferred orientation. The row spacing
  is adjusted so that an even number of rows tiles the period ``2L`` exactly; the
  in-row spacing is ``spacing`` (default ``2.1 a``, just past contact ``2a``).

  This is the usual start for measuring whether a dense phase coexists with a gas
  (motility-induced phase separation): a stable slab keeps its particles; an unstable
  one dissolves into a homogeneous fluid. Two dimensions only.

  Args:
    key: PRNG key (gas positions and self-propulsions).
    n: number of particles ``N``.
    params: the system (box half width ``L`` and radius ``a``, lengths in the model's
      units).
    dense_share: target fraction of the particles in the slab, in (0, 1).
    spacing: in-row lattice spacing (length), default ``2.1 a``.

  Returns:
    ``[2, N, 2]``: positions (the slab's particles first, then the gas) and
    self-propulsions.
  """
  check_params(params)
  _checks.check_positive_int(n, "n")
  if not 0 < float(dense_share) < 1:
    raise ValueError(f"dense_share must lie in (0, 1), got {dense_share}")
  spacing = 2.1 * params.radius if spacing is None else float(spacing)
  if not (math.isfinite(spacing) and spacing > 0):
    raise ValueError(f"spacing must be a finite positive length, got {spacing}")
  period = 2.0 * params.half_width
  rows = 2 * int(period / (spacing * math.sqrt(3.0)))  # even, row gap >= spacing sqrt(3)/2
  if rows < 2:
    raise ValueError(f"the box (width {period:.3g}) is too small for a slab with spacing "
                     f"{spacing}")
  per_row = max(1, round(dense_share * n / rows))
  if per_row * rows >= n or per_row * spacing >= period:
    raise ValueError(f"dense_share={dense_share} puts {per_row * rows} of n={n} particles in "
                     f"a slab {per_row * spacing:.3g} wide; the box is {period:.3g} wide")
  r, c = np.divmod(np.arange(rows * per_row), per_row)
  width = per_row * spacing
  lattice = np.stack([-0.5 * width + (c + 0.5 * (r % 2) + 0.25) * spacing,
                      -params.half_width + (r + 0.5) * period / rows], axis=1)
  kx, ky, kg = jax.random.split(key, 3)
  gas = n - rows * per_row
  gas_x = 0.5 * width + jax.random.uniform(kx, (gas,), maxval=period - width)
  gas_y = jax.random.uniform(ky, (gas,), minval=-params.half_width, maxval=params.half_width)
  x = jnp.concatenate([jnp.asarray(lattice, gas_x.dtype), jnp.stack([gas_x, gas_y], 1)])
  x = wrap_positions(x, params.half_width)
  return jnp.stack([x, jax.random.normal(kg, (n, 2), x.dtype)])


@functools.partial(jax.jit, static_argnames=("block",))
def _count_within(x: Array, half_width, probe, block: int) -> Array:
  n = x.shape[0]
  pad = -(-n // block) * block - n
  # Padding rows repeat particle 0; their counts are dropped.
  rows = jnp.concatenate([x, jnp.broadcast_to(x[:1], (pad, x.shape[1]))]).reshape(
      -1, block, x.shape[1])

  def count(chunk):
    diff = minimum_image(chunk[:, None, :] - x[None, :, :], half_width)
    return jnp.sum(jnp.sum(diff * diff, axis=-1) <= probe * probe, axis=1)

  return lax.map(count, rows).reshape(-1)[:n]


def local_packing_fraction(x, params: AOUPParams, probe: Optional[float] = None,
                           block: int = 256) -> Array:
  r"""Packing fraction seen by each particle: the number of particle centres within
  ``probe`` of it (itself included, minimum image) times :math:`V_d(a) / V_d(R)`,
  the disk-counting estimate of the local density. ``[N, d] -> [N]`` (dimensionless).
  A diagnostic for the MIPS states of Boffi & Vanden-Eijnden (PNAS 2024), whose code
  tells solid from gas by neighbour counts within a fixed radius in the same way.

  Motility-induced phase separation shows as a bimodal distribution: dense clusters
  near close packing and a dilute gas; an ideal gas (independent uniform positions) at
  packing ``phi`` averages ``phi (N - 1) / N + (a / R)^d``. Exact pair counts, ``O(N^2)``
  work in blocks of ``block`` rows (``O(N block)`` memory).

  Args:
    x: ``[N, d]`` positions.
    params: the system (box and particle radius ``a``).
    probe: probe radius ``R`` (default ``3 a``).
    block: rows per block.
  """
  check_params(params)
  x = _checks.as_float_array(x, "x")
  if x.ndim != 2:
    raise ValueError(f"x must be [N, d] positions, got shape {x.shape}")
  probe = 3.0 * params.radius if probe is None else probe
  if not (math.isfinite(float(probe)) and float(probe) > 0):
    raise ValueError(f"probe must be a finite positive radius, got {probe}")
  _checks.check_positive_int(block, "block")
  counts = _count_within(x, float(params.half_width), float(probe), int(block))
  return counts.astype(x.dtype) * (params.radius / probe) ** x.shape[1]


def packing_groups(x, params: AOUPParams, dense: float = 0.7, dilute: float = 0.3,
                   probe: Optional[float] = None) -> dict[str, Array]:
  """Particles grouped by their surroundings, from :func:`local_packing_fraction`:
  ``x [..., N, d]`` -> ``{"dilute", "intermediate", "dense"}``, boolean masks ``[...,
  N]`` that partition the particles (local packing ``<= dilute``, strictly between,
  ``>= dense``; dimensionless thresholds).

  In a phase-separated MIPS state the intermediate group holds the cluster interfaces
  (Boffi & Vanden-Eijnden, PNAS 2024, locate entropy production there); the
  thresholds are conventions, not properties of the model (see
  :func:`phase_fractions` for an ideal gas's baseline).
  """
  x = _checks.as_float_array(x, "x")
  if x.ndim < 2:
    raise ValueError(f"x must be [..., N, d] positions, got shape {x.shape}")
  _check_thresholds(dense, dilute)
  flat = x.reshape((-1,) + x.shape[-2:])
  local = jnp.stack([local_packing_fraction(z, params, probe) for z in flat])
  return group_by_packing(local.reshape(x.shape[:-1]), dense, dilute)


def _check_thresholds(dense, dilute) -> None:
  if not 0 <= dilute < dense:
    raise ValueError(f"need 0 <= dilute < dense, got dilute={dilute}, dense={dense}")


def group_by_packing(local, dense: float = 0.7, dilute: float = 0.3) -> dict:
  """:func:`packing_groups` from local packing fractions already computed (by
  :func:`local_packing_fraction`): ``local [...]`` -> ``{"dilute", "intermediate",
  "dense"}`` boolean masks of the same shape (``<= dilute``, strictly between, ``>=
  dense``). NumPy input gives NumPy masks, JAX input JAX masks."""
  _check_thresholds(dense, dilute)
  return {"dilute": local <= dilute, "intermediate": (local > dilute) & (local < dense),
          "dense": local >= dense}


def phase_fractions(x, params: AOUPParams, dense: float = 0.7, dilute: float = 0.3,
                    probe: Optional[float] = None) -> tuple[Array, Array]:
  """Shares of particles in dense (local packing ``>= dense``) and in dilute (``<=
  dilute``) surroundings, from :func:`packing_groups`: ``x [..., N, d]`` -> two arrays
  of shape ``[...]`` (fractions in [0, 1]).

  Motility-induced phase separation moves particles into both groups; but even an
  ideal gas has some in each: for independent uniform positions the count of other
  centres within the probe is binomial, and at packing 0.5 with the default probe and
  thresholds about 30 % of the particles come out dense and 6 % dilute (binomial tails,
  checked in ``tests/production/test_active.py``). Compare against that baseline (or a
  run's uniform start); the thresholds are conventions, not properties of the model.
  The authors' notebook labels a particle solid with at least 5 centres (itself
  included) within 2.4 and gas with at most 2: ``probe=2.4, dense=4.5 / 2.4**2,
  dilute=2.5 / 2.4**2`` here (``benchmarks/mips_relaxation.py`` reports both).
  """
  groups = packing_groups(x, params, dense=dense, dilute=dilute, probe=probe)
  return jnp.mean(groups["dense"], axis=-1), jnp.mean(groups["dilute"], axis=-1)


__all__ = [
    "AOUPParams",
    "Neighbors",
    "SimulationResult",
    "VelocityFeatures",
    "aoup_diffusion",
    "aoup_drift",
    "aoup_drift_blocks",
    "aoup_drift_divergence",
    "aoup_score_free_entropy_production",
    "box_half_width",
    "dense_position_jacobian",
    "group_by_packing",
    "harmonic_self_propulsion_score",
    "interaction_cutoff",
    "local_packing_fraction",
    "minimum_image",
    "neighbor_list",
    "own_velocity_features",
    "packing_groups",
    "pair_forces",
    "pair_forces_dense",
    "phase_fractions",
    "random_configuration",
    "shifted_score",
    "simulate_aoup",
    "slab_configuration",
    "slaved_mode_basis",
    "velocity_features",
    "wrap_positions",
]
