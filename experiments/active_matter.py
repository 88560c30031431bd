"""Entropy production of motility-induced phase separation from a learned local score.

Boffi & Vanden-Eijnden ("Deep learning probability flows and entropy production rates in
active matter", PNAS 2024): active Ornstein-Uhlenbeck particles with soft
repulsion (``entropylab.production.active``) at v0 = 0.025, gamma = 1e-4, packing
fraction 0.5, eps = 0 (noise only in the self-propulsion g) and dt = 0.1 phase-separate
into dense clusters and a dilute gas. With eps = 0 the entropy production rate is
``gamma^-1 E|v_g|^2 = gamma E|g + s_g|^2``, where ``s_g`` is the g-part of the score of
the stationary density; its per-particle terms give a spatial map of where entropy is
produced.

Steps:

1. ``chains`` independent simulations from random configurations, ``relax_steps``
   steps, then ``samples_per_chain`` states every ``sample_every`` steps. The
   simulation runs in chunks saved under ``sim/``, so ``--resume`` continues a killed run
   where it stopped.
2. A ``LocalTransformer`` score (each particle attends to its ``num_neighbors`` nearest
   neighbours; with ``shift_g`` it learns the correction to ``s_g = -g``, and with
   ``shift_slaved`` (the default at eps = 0) to the slaved-mode score of step 3; with
   ``score_features = "velocity"``, the default, it also sees each particle's scaled
   velocity ``u = b_x / (v0 sqrt(gamma))`` and, for its own output, ``a = (d b_x / d x)
   u`` (``active.velocity_features``), and its g output is divided by ``sqrt(gamma)``:
   for harmonic forces the exact ``s_g`` is the particle's own ``(a - gamma u) /
   sqrt(gamma)``, while in the state it hides in differences of order ``sqrt(gamma)``;
   on MIPS states the network certifies 6.8 % of the score-free rate with these inputs
   and none without, ``benchmarks/results/velocity_features_cpu.md``), trained with
   the runner's checkpointed loop (``train/``). The default loss (``score_loss =
   "ism_g"``) is implicit score matching of the self-propulsion part, the only part the
   rate needs, with the exact per-particle divergence
   (``prod.local_implicit_score_matching_loss``), plus antithetic denoising score
   matching of the position part (noise ``dsm_sigma_x``,
   ``prod.local_denoising_score_matching_loss``), each on ``query_size`` random
   particles per state. After each training chunk the lower bound of step 3 on the
   first ``monitor_states`` held-out states is logged (``train/monitor``, the
   learning curve in ``training.png`` and ``table.md``). ``"dsm"`` trains the whole
   state by denoising score matching (noise ``dsm_sigma_x``, ``dsm_sigma_g``), the
   choice of earlier runs, whose rate at N = 4096 on CPU lies below even the lower
   bound from its own network (``benchmarks/results/active_matter_cpu_n4096.md``). The
   last ``held_out`` fraction of each chain's samples is kept for evaluation, and the
   ``validation`` fraction before it is not trained on either: the bound on those states,
   logged for the initial network and after each chunk (``train/select``), chooses the
   network that is evaluated (early stopping against over-fitting; with
   ``shift_slaved`` the initial network is the slaved-mode score, so the choice is never
   below it on those states, and a trained one replaces it only with a gain of more than
   ``selection_threshold(selection_margin, chains)`` paired standard errors over the
   chains' mean gains on them: a t test at the level of ``selection_margin`` normal
   standard errors).
3. On held-out samples: the total EPR and its per-particle terms, the lower bound
   ``prod.hypoelliptic_entropy_production_bound`` (valid for any score, equal to the
   rate at the exact score; it needs samples independent of the training data, which
   the transfer chains of step 4 are and the held-out states of the training chains
   are only in part), the rate from the states alone
   (``active.aoup_score_free_entropy_production``: at eps = 0 the mean phase-space
   contraction of the positions, exact in expectation, no network), means per
   particle grouped by local packing (dilute,
   intermediate: the interfaces, dense) and by each particle's count of centres within
   three radii (:func:`packing_profile`, a table and a panel of ``local_epr.png``), a
   map of both binned over the box (``local_epr.png``, beside the particle density),
   and the stationarity residual
   E[v . s] / E[|v| |s|]. With eps = 0 (and ``slaved_mode_degree >= 0``), also the
   slaved-mode score, which needs no network (fitted before step 2, so that with
   ``shift_slaved``, the default, the network learns its correction, ``s_g = -g + f +
   NN_g / sqrt(gamma)``, from a zero readout): the harmonic score and its slaving
   corrections filtered by powers of the position Jacobian up to ``slaved_mode_degree``
   (``active.local_slaved_mode_basis``, local, ``O(N K)``), weighted by a closed-form
   fit on the training states (``prod.fit_linear_self_propulsion_score``, saved in
   ``slaved_modes.json``), its lower bound per particle, by packing and on the map.
   On stationary MIPS states at N = 256, degree 3 (three orders) certifies 92 % of the
   score-free rate at gamma = 1e-2 and 64 % at 1e-4, at least as much as 16 bands of
   the dense ``active.slaved_mode_basis``, and its coefficients carried unchanged to
   N = 1024 certify 91 % and 60 % there (``benchmarks/results/local_slaved_modes_cpu.md``);
   the velocity network certifies 71 % and 3 % (``benchmarks/results/velocity_features_cpu*``).
4. Transfer: the same network, unchanged, on a system of ``transfer_factor`` times more
   particles at the same density, and at each of ``transfer_packing`` (fresh simulations
   of the same length): EPR per particle and the stationarity residual; the slaved-mode
   score's coefficients likewise.

The smoke preset is a short run at N = 256 that exercises the whole pipeline on CPU.
The paper preset (N = 4096, on a GPU) starts, like the authors' data generation, from a
clump (positions normal around the centre with standard deviation L / 2,
``initial_spread = 0.5``) and relaxes 5 x 10^5 steps (gamma = 1e-4 makes the
self-propulsion persist for 10^5 steps). The box size matters: on CPU
(``benchmarks/results/mips_relaxation_cpu_*.md``) a dense slab of 70 % of the particles
and the authors' clump each become one round dense cluster at N = 4096 (0.62 and 0.52
of the particles in dense surroundings after 2 x 10^5 steps), but the slab dissolves
into a homogeneous fluid within 10^4 steps at N = 1024, and a uniform start at N = 4096
forms coarsening domains (0.28 dense after 4 x 10^4 steps). The main chains run in one
``simulate_aoup`` call per chunk (one compiled loop on accelerators). The summary
records, after every chunk, the shares of particles in dense and in dilute surroundings
(``active.phase_fractions``), so a run shows whether and when it phase-separated.

Outputs: ``local_epr.png``, ``training.png``, ``table.md``, ``summary.json``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import shutil
import time
import zlib
from typing import Callable, Mapping, Optional

import jax
from jax import Array
import jax.numpy as jnp
import numpy as np

from entropylab import production as prod
from entropylab.models import LocalTransformer
from entropylab.production import active
from entropylab.runner import checkpoint, devices
from entropylab.runner.rundir import RunDir, write_json
import experiments
from experiments._training import fit_adam_cosine


@dataclasses.dataclass(frozen=True)
class Config:
  n_particles: int = 4096
  packing_fraction: float = 0.5
  v0: float = 0.025
  gamma: float = 1e-4
  epsilon: float = 0.0
  dt: float = 0.1
  chains: int = 4
  relax_steps: int = 500_000
  sample_every: int = 1000
  samples_per_chain: int = 64
  chunk_steps: int = 20_000
  # Initial positions: None = uniform in the box; a number = normal around the centre
  # with standard deviation initial_spread * L (random_configuration's ``spread``).
  initial_spread: Optional[float] = None
  # Neighbour-list capacities of the simulation (simulate_aoup). Dense MIPS clusters
  # pack the soft particles beyond simulate_aoup's defaults (32 partners, twice the
  # close-packed count per cell: 11 here), which overflowed at packing fraction 0.7.
  max_neighbors: int = 64
  max_per_cell: int = 24
  held_out: float = 0.25
  # The fraction of each chain's samples before its held-out ones that is kept out of
  # training to choose the network (the training step with the highest bound on them
  # among those that qualify, see selection_margin; train_score's select_x); 0 keeps the
  # last network.
  validation: float = 0.125
  # A trained network is chosen over the start only where its gain on the validation
  # states passes a one-sided t test at the level of this many normal standard errors
  # (selection_threshold: 13.97 paired standard errors for 2 chains at 2, 3.31 for 4),
  # the standard error sd(v_s - v_0) / sqrt(C) over the C chains' mean bounds on their
  # validation states (selected_step; a chain's states are correlated for about
  # 1/gamma, the chains are independent); 0: the highest bound, however small its gain.
  selection_margin: float = 2.0
  num_neighbors: int = 16
  width: int = 64
  depth: int = 2
  train_steps: int = 6_000
  batch_size: int = 8
  learning_rate: float = 1e-3
  # "ism_g": implicit score matching on the self-propulsions (exact per-particle
  # divergence, the EPR's only input) plus denoising score matching on the positions
  # (noise dsm_sigma_x), each on query_size random particles per state; "ism_g_only":
  # the first term alone (the rate needs only s_g); "dsm": denoising score matching of
  # the whole state (noise dsm_sigma_x, dsm_sigma_g).
  score_loss: str = "ism_g"
  query_size: int = 512
  dsm_sigma_x: float = 0.05
  dsm_sigma_g: float = 0.05
  # A second network trained by "dsm" for this many steps at this batch size on the
  # same samples (0: none), evaluated beside the first: plug-in rate and lower bound.
  dsm_baseline_steps: int = 0
  dsm_baseline_batch_size: int = 2
  # Learning curve of the lower bound: after each training chunk, the per-particle
  # bound on the first monitor_states held-out states (0: none), in train/monitor.
  monitor_states: int = 2
  map_bins: int = 24
  # The g-part of the "shift" parametrisation: s = NN + (0, -g), exact with NN = 0 when
  # g is independent of x (v0 = 0), so the network learns only the activity's
  # correction and v_g = -gamma NN_g (see score_function).
  shift_g: bool = True
  # Inputs beside the state: "velocity" gives each particle's token the scaled
  # velocity u = b_x / (v0 sqrt(gamma)) of itself and its neighbours, and its own token
  # also a = (d b_x / d x) u (active.velocity_features, from a neighbour list with the
  # capacities above), and scales the g output by 1 / sqrt(gamma): s_g = NN_g /
  # sqrt(gamma) (- g with shift_g). For harmonic forces the exact s_g is then a linear
  # function of the particle's own u and a. "none": the state alone (earlier runs).
  score_features: str = "velocity"
  # With velocity features: add that harmonic score, (a - gamma u) / sqrt(gamma)
  # (active.harmonic_self_propulsion_score), in place of -g (which it equals for free
  # particles), so that the network learns only the correction for soft repulsion.
  shift_harmonic: bool = False
  # The slaved-mode score (no network; `active.local_slaved_mode_basis` with powers of
  # the position Jacobian up to this degree and SLAVED_MODE_ORDER slaving orders, fitted
  # in closed form on the training states) is fitted and evaluated, with eps = 0, on
  # every system (O(N K) per state); -1: never.
  slaved_mode_degree: int = 3
  # With eps = 0 and the implicit score matching losses: the network learns a correction
  # to the slaved-mode score, s_g = -g + f + NN_g / sqrt(gamma) with f the fitted
  # slaved-mode field of the state (fitted before training and evaluated once per
  # state, `slaved_mode_fields`), so a zero network has the slaved-mode bound.
  shift_slaved: bool = True
  # With shift_slaved: lambda of a penalty (lambda / 2) E sum_i |s_g,i - (f_i - g_i)|^2
  # = (lambda / 2) E sum_i |NN_g,i / sqrt(gamma)|^2 added to the implicit score matching
  # loss (on query_size random particles per state), which pulls the network toward the
  # slaved-mode score: where a free s would move to the score s*, the penalised one moves
  # to (s* + lambda (f - g)) / (1 + lambda). 0: none.
  correction_penalty: float = 0.0
  transfer_factor: int = 4
  transfer_packing: tuple[float, ...] = (0.3, 0.7)
  seed: int = 0
  progress: bool = True

  def split(self) -> tuple[int, int, int]:
    """Samples per chain for training, validation and evaluation, in this order in time."""
    n_held = max(1, int(round(self.held_out * self.samples_per_chain)))
    n_val = int(round(self.validation * self.samples_per_chain))
    n_val = max(1, n_val) if self.validation else 0
    return self.samples_per_chain - n_held - n_val, n_val, n_held

  def validate(self) -> None:
    for name in ("n_particles", "chains", "relax_steps", "sample_every", "samples_per_chain",
                 "chunk_steps", "max_neighbors", "max_per_cell", "num_neighbors", "width",
                 "depth", "train_steps", "batch_size", "query_size", "map_bins",
                 "transfer_factor"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
    if self.n_particles <= self.num_neighbors:
      raise ValueError(f"n_particles ({self.n_particles}) must exceed num_neighbors "
                       f"({self.num_neighbors})")
    if self.monitor_states < 0:
      raise ValueError(f"monitor_states must be >= 0, got {self.monitor_states}")
    if self.slaved_mode_degree < -1:
      raise ValueError(f"slaved_mode_degree must be >= -1, got {self.slaved_mode_degree}")
    if self.dsm_baseline_steps < 0 or self.dsm_baseline_batch_size < 1:
      raise ValueError(f"need dsm_baseline_steps >= 0 and dsm_baseline_batch_size >= 1, got "
                       f"{self.dsm_baseline_steps}, {self.dsm_baseline_batch_size}")
    if self.score_features not in ("none", "velocity"):
      raise ValueError(f"score_features must be 'none' or 'velocity', got "
                       f"{self.score_features!r}")
    if self.score_features == "velocity" and self.v0 == 0:
      raise ValueError("score_features 'velocity' scales by v0, which is 0")
    if self.shift_harmonic and self.score_features != "velocity":
      raise ValueError("shift_harmonic needs score_features 'velocity', got "
                       f"{self.score_features!r}")
    if self.shift_slaved and (self.slaved_mode_degree < 0 or self.shift_harmonic
                              or not self.shift_g or self.score_loss == "dsm"):
      raise ValueError("shift_slaved needs slaved_mode_degree >= 0, shift_g, no "
                       "shift_harmonic and an implicit score matching loss, got "
                       f"slaved_mode_degree={self.slaved_mode_degree}, shift_g={self.shift_g}"
                       f", shift_harmonic={self.shift_harmonic}, score_loss={self.score_loss!r}")
    if not (math.isfinite(self.correction_penalty) and self.correction_penalty >= 0):
      raise ValueError(f"correction_penalty must be a finite number >= 0, got "
                       f"{self.correction_penalty}")
    if self.correction_penalty and (not self.shift_slaved or self.epsilon != 0):
      raise ValueError("correction_penalty pulls toward the slaved-mode score and needs "
                       f"shift_slaved and epsilon 0, got shift_slaved={self.shift_slaved}, "
                       f"epsilon={self.epsilon}")
    if self.score_loss not in ("ism_g", "ism_g_only", "dsm"):
      raise ValueError("score_loss must be 'ism_g', 'ism_g_only' or 'dsm', got "
                       f"{self.score_loss!r}")
    if self.query_size > self.n_particles:
      raise ValueError(f"query_size ({self.query_size}) must be <= n_particles "
                       f"({self.n_particles})")
    for phi in (self.packing_fraction,) + tuple(self.transfer_packing):
      if not 0 < phi < 1:
        raise ValueError(f"packing fractions must lie in (0, 1), got {phi}")
    for name in ("dt", "gamma", "learning_rate", "dsm_sigma_x", "dsm_sigma_g"):
      value = getattr(self, name)
      if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite positive number, got {value}")
    if self.initial_spread is not None and not (math.isfinite(self.initial_spread)
                                                and self.initial_spread > 0):
      raise ValueError(f"initial_spread must be None or a finite positive number, got "
                       f"{self.initial_spread}")
    if not self.epsilon >= 0:
      raise ValueError(f"epsilon must be >= 0, got {self.epsilon}")
    if not 0 < self.held_out < 1:
      raise ValueError(f"held_out must lie in (0, 1), got {self.held_out}")
    if self.samples_per_chain * self.held_out < 1:
      raise ValueError("held_out leaves no held-out sample per chain")
    if not 0 <= self.validation < 1:
      raise ValueError(f"validation must lie in [0, 1), got {self.validation}")
    _check_margin(self.selection_margin, "selection_margin")
    if self.validation and self.samples_per_chain * self.validation < 1:
      raise ValueError("validation leaves no validation sample per chain; set it to 0 to "
                       "train on them")
    if self.validation and self.epsilon != 0:
      raise ValueError("validation selects by the eps = 0 bound; set it to 0 when epsilon > 0")
    if self.split()[0] < 1:
      raise ValueError(f"held_out ({self.held_out}) and validation ({self.validation}) leave "
                       f"no training sample of {self.samples_per_chain} per chain")
    if self.validation and self.selection_margin and self.chains < 2:
      raise ValueError("selection_margin > 0 compares gains over the chains' validation "
                       f"states, so it needs at least 2 chains, got {self.chains}; set it "
                       "to 0")
    if self.chunk_steps % self.sample_every:
      raise ValueError(f"chunk_steps ({self.chunk_steps}) must be a multiple of "
                       f"sample_every ({self.sample_every})")


PRESETS = {
    "smoke": Config(n_particles=256, chains=2, relax_steps=2000, sample_every=50,
                    samples_per_chain=32, chunk_steps=1000, num_neighbors=12, width=32,
                    train_steps=200, batch_size=4, learning_rate=2e-3, query_size=128,
                    map_bins=12,
                    transfer_factor=4, transfer_packing=(0.3,)),
    # The authors' start: a clump that becomes one dense cluster at N = 4096.
    "paper": Config(initial_spread=0.5),
}


def system(cfg: Config, n: int, phi: float) -> active.AOUPParams:
  return active.AOUPParams(v0=cfg.v0, gamma=cfg.gamma, epsilon=cfg.epsilon,
                           half_width=active.box_half_width(n, phi))


def simulate_chains(cfg: Config, params: active.AOUPParams, n: int, chains: int, tag: str,
                    sim_dir, resume: bool) -> tuple[np.ndarray, list[dict]]:
  """``[chains, samples_per_chain, 2, N, 2]`` states of independent chains (one
  ``simulate_aoup`` call per chunk: one loop on accelerators) in chunks of
  ``chunk_steps`` steps whose results are saved, so a resumed run skips finished
  chunks; and the relaxation record: after each chunk, the chain-averaged shares of
  particles in dense and dilute surroundings (``active.phase_fractions``). Chain ``c``
  has its own key (from ``tag`` and ``c``) and random start."""
  keys, states = [], []
  for c in range(chains):
    key = jax.random.fold_in(jax.random.key(cfg.seed), zlib.crc32(f"{tag}/{c}".encode()))
    init_key, key = jax.random.split(key)
    keys.append(key)
    states.append(active.random_configuration(init_key, n, params, spread=cfg.initial_spread))
  keys, state = jnp.stack(keys), jnp.stack(states)
  relaxation = [_phases(0, state[:, 0], params)]
  total = cfg.relax_steps + cfg.sample_every * cfg.samples_per_chain
  total = -(-total // cfg.chunk_steps) * cfg.chunk_steps
  saved = []
  for start in range(0, total, cfg.chunk_steps):
    path = sim_dir / f"{tag}_chains{chains}_step{start + cfg.chunk_steps}.npy"
    if resume and path.exists():
      states = np.load(path)
    else:
      res = active.simulate_aoup(keys, state, params, cfg.dt, cfg.chunk_steps,
                                 save_every=cfg.sample_every, start_step=start,
                                 max_neighbors=cfg.max_neighbors, max_per_cell=cfg.max_per_cell)
      states = np.asarray(res.states)                            # [chains, saved, 2, N, 2]
      tmp = path.with_suffix(".tmp.npy")
      np.save(tmp, states)
      tmp.replace(path)
    state = jnp.asarray(states[:, -1])
    relaxation.append(_phases(start + cfg.chunk_steps, state[:, 0], params))
    first_step = start + cfg.sample_every * np.arange(1, states.shape[1] + 1)
    saved += [states[:, i] for i, t in enumerate(first_step) if t > cfg.relax_steps]
  return np.stack(saved[:cfg.samples_per_chain], axis=1), relaxation


def _phases(step: int, x, params: active.AOUPParams) -> dict:
  """Chain means and per-chain values (one chain may separate while another has not)."""
  dense, dilute = active.phase_fractions(x, params)
  return {"step": int(step), "dense": round(float(jnp.mean(dense)), 4),
          "dilute": round(float(jnp.mean(dilute)), 4),
          "dense_per_chain": [round(float(v), 4) for v in dense]}


def local_score(net, net_params, params: active.AOUPParams, cfg: Config,
                features_fn: Optional[Callable] = None,
                slaved: Optional[tuple[Array, Array]] = None):
  """``s(state [2, N, 2], query [M] or None, self_shift [2, M, 2] or None) -> [2, M, 2]``:
  the network's output for the queried particles, in the form ``cfg`` sets: with
  ``score_features = "velocity"`` the network also sees ``active.velocity_features``
  (neighbours' ``u`` as ``features``; its own ``u`` and ``a``, moved with the shift of
  its own ``g``, as ``self_features``) and its g output is divided by ``sqrt(gamma)``;
  with ``shift_g``, ``(0, -g)`` is added (the g-part of Boffi & Vanden-Eijnden's shift;
  its x-part divides by epsilon, which is 0 here), or with ``shift_harmonic`` the
  harmonic score ``(a - gamma u) / sqrt(gamma)`` of the shifted ``u`` and ``a`` instead.
  Positions are folded into the box first. The form that
  ``prod.local_implicit_score_matching_loss`` and
  ``prod.hypoelliptic_entropy_production_bound`` take; their divergences in ``g`` are
  exact. (With velocity features, the x-part of ``self_shift`` moves the network's
  offsets but not the features, so a divergence in ``x``, which no loss here uses,
  would not be.)

  ``features_fn(state [2, N, 2]) -> active.VelocityFeatures`` replaces
  ``active.velocity_features`` (from a neighbour list with ``cfg``'s capacities) for a
  system whose drift is not the soft-repulsion model's; it receives the folded state.
  A neighbour list that overflows its capacities drops partners from the features
  without raising; the score is still a function of the state with the own blocks that
  match its features, so the lower bound stays valid.

  ``slaved = (f [N, 2], div [N])``, the slaved-mode field of this one state and its
  per-particle divergences in the own ``g`` (:func:`slaved_mode_fields`), adds ``f`` to
  the g output (``shift_slaved``), moved by a shift ``delta`` of the own ``g`` as ``f_i
  + (div_i / 2) delta``: the own 2 x 2 Jacobian block of ``f`` is replaced by one with
  the same trace, so the value and the divergence at zero shift, all that the losses,
  the bound and the plug-in rate use, are exact."""
  half = params.half_width
  velocity = cfg.score_features == "velocity"
  cutoff = active.interaction_cutoff(params)
  root_gamma = math.sqrt(params.gamma)
  if features_fn is None:
    def features_fn(z):
      nb = active.neighbor_list(z[0], params, cutoff, cfg.max_neighbors, cfg.max_per_cell)
      return active.velocity_features(z, params, nb)

  def score(z, query=None, self_shift=None):
    z = z.at[0].set(active.wrap_positions(z[0], half))
    q = jnp.arange(z.shape[1]) if query is None else query
    features = own = None
    if velocity:
      f = features_fn(z)
      u, a = active.own_velocity_features(f, q, None if self_shift is None else self_shift[1],
                                          params.gamma)
      features, own = f.velocity, jnp.concatenate([u, a], axis=-1)
    out = net.apply(net_params, z, half, query, self_shift, features, own)
    if velocity:
      out = out.at[1].divide(root_gamma)
    if cfg.shift_harmonic:
      out = out.at[1].add((a - params.gamma * u) / root_gamma)
    elif cfg.shift_g:
      g = z[1][q]
      out = out.at[1].add(-(g if self_shift is None else g + self_shift[1]))
    if slaved is not None:
      f, div = slaved[0][q], slaved[1][q]
      if self_shift is not None:
        f = f + (div / f.shape[-1])[:, None] * self_shift[1]
      out = out.at[1].add(f.astype(out.dtype))
    return out

  return score


def init_network(net, params: active.AOUPParams, cfg: Config, state, key):
  """Parameters of ``net`` for ``state [2, N, 2]`` with the inputs ``cfg`` sets."""
  n, dim = state.shape[1], state.shape[2]
  if cfg.score_features == "velocity":
    return net.init(key, state, params.half_width, None, None, jnp.zeros((n, dim)),
                    jnp.zeros((n, 2 * dim)))
  return net.init(key, state, params.half_width)


def score_function(net, net_params, params: active.AOUPParams, cfg: Config,
                   features_fn: Optional[Callable] = None,
                   slaved: Optional[tuple[Array, Array]] = None):
  """``s(state [2, N, 2]) -> [2, N, 2]``: :func:`local_score` for every particle."""
  score = local_score(net, net_params, params, cfg, features_fn, slaved)
  return lambda z: score(z)


def network_bound(net, net_params, params: active.AOUPParams, cfg: Config, x,
                  fields: Optional[tuple[Array, Array]] = None,
                  features_fn: Optional[Callable] = None) -> Array:
  """``[B, N]``: the per-particle terms of ``prod.hypoelliptic_entropy_production_bound``
  (nats per unit time) of :func:`local_score` on the states ``x [B, 2, N, 2]``, each
  state with its own slaved-mode field when ``fields = (f [B, N, 2], div [B, N])``."""
  if fields is None:
    return prod.hypoelliptic_entropy_production_bound(
        local_score(net, net_params, params, cfg, features_fn), x, params.gamma, local=True)

  def one(args):
    z, f, div = args
    score = local_score(net, net_params, params, cfg, features_fn, (f, div))
    return prod.hypoelliptic_entropy_production_bound(score, z[None], params.gamma,
                                                      local=True)[0]

  return jax.lax.map(one, (x, *fields))


def bound_monitor(net, params: active.AOUPParams, x: np.ndarray, cfg: Config,
                  log_dir: RunDir, features_fn: Optional[Callable] = None,
                  fields: Optional[tuple[np.ndarray, np.ndarray]] = None,
                  select_from=None, margin: float = 0.0, blocks: Optional[int] = None):
  """A ``fit`` callback that logs, after each chunk, the per-particle lower bound
  ``hypoelliptic_entropy_production_bound / N`` (nats per unit time) of the current
  network on the states ``x [B, 2, N, 2]`` (with their slaved-mode ``fields``, as in
  :func:`network_bound`) in ``log_dir.metrics`` as ``{"step", "bound_per_particle"}``.
  Records from an interrupted run at or after a chunk's step are replaced, so a resumed
  run's log equals an uninterrupted one's.

  With ``select_from``, the initial network parameters, it also logs each state's
  bound (``"per_state"``, ``[B]``) and ``"blocks"``: the states are that many equal
  consecutive blocks, each from one independent chain (``None``: ``B``, every state
  independent), the units of :func:`selection_log`. It keeps the best network
  (:func:`selected_network`): on its first call it logs the initial network as step 0,
  and whenever a network becomes :func:`selected_step`'s choice (with ``margin``) it
  saves its parameters (orbax, ``log_dir / "best"``, the newest two bests kept) before
  logging it. ``fit`` runs the callback before the chunk's checkpoint, so a run killed
  anywhere resumes to the log and the best network of an uninterrupted run."""
  blocks = state_blocks(len(x), blocks)
  xj = jnp.asarray(x)
  fj = None if fields is None else tuple(jnp.asarray(a, jnp.float32) for a in fields)

  @jax.jit
  def bounds(p):                                                   # [B] per particle
    return jnp.sum(network_bound(net, p, params, cfg, xj, fj, features_fn), axis=1) / x.shape[2]

  def log(step, p):
    per_state = np.asarray(bounds(p), np.float64)
    value = float(np.mean(per_state))
    if not math.isfinite(value):
      raise FloatingPointError(f"the EPR bound at step {step} is {value}")
    extra = {}
    if select_from is not None:
      curve, units = selection_log(log_dir)
      keep = [i for i, (st, _) in enumerate(curve) if st < step]
      curve = [curve[i] for i in keep] + [(step, value)]
      unit = block_means(per_state[None], blocks)
      units = np.concatenate([units[keep], unit]) if keep else unit
      if selected_step(curve, units, margin) == step:
        checkpoint.save(log_dir.path / "best", step, p, keep=2)
      extra = {"per_state": per_state.tolist(), "blocks": blocks}
    log_dir.metrics.truncate_after(step - 1)
    log_dir.metrics.append(step, bound_per_particle=value, **extra)

  def callback(state, record):
    if select_from is not None and not any(st == 0 for st, _ in bound_curve(log_dir)):
      log(0, select_from)
    log(record["step"], state.params)

  return callback


def bound_curve(log_dir: RunDir) -> list[tuple[int, float]]:
  """``[(step, bound per particle), ...]`` logged by a :func:`bound_monitor` in
  ``log_dir`` (nats per unit time per particle), in step order; empty if none."""
  return [(r["step"], r["bound_per_particle"]) for r in log_dir.metrics.records()]


def state_blocks(n_states: int, blocks: Optional[int], name: str = "blocks") -> int:
  """``blocks`` (the argument ``name``) checked against ``n_states`` (``None``:
  ``n_states``, every state its own block): a positive integer that divides it."""
  if blocks is None:
    return int(n_states)
  if isinstance(blocks, bool) or not isinstance(blocks, (int, np.integer)):
    raise TypeError(f"{name} must be an int, got {type(blocks).__name__}")
  if blocks < 1 or n_states % blocks:
    raise ValueError(f"{name} must be a positive divisor of the number of states "
                     f"({n_states}), got {blocks}")
  return int(blocks)


def block_means(per_state, blocks: Optional[int]) -> np.ndarray:
  """``[S, blocks]``: the means of ``per_state [S, V]`` (bounds per particle, nats per
  unit time) over ``blocks`` equal consecutive blocks of its V states, float64
  (``None``: every state its own block, :func:`state_blocks`)."""
  states = np.asarray(per_state, np.float64)
  if states.ndim != 2:
    raise ValueError(f"per_state must be [S, V], got shape {states.shape}")
  blocks = state_blocks(states.shape[1], blocks)
  return states.reshape(states.shape[0], blocks, -1).mean(axis=-1)


def selection_log(log_dir: RunDir) -> tuple[list[tuple[int, float]], np.ndarray]:
  """``(curve, per_block [len(curve), C])`` logged by a :func:`bound_monitor` with
  ``select_from``: :func:`bound_curve` and each entry's mean bound per particle on each
  of the C independent blocks of states (:func:`block_means` of the logged per-state
  bounds; with equal blocks, their mean is the curve's), in nats per unit time per
  particle. These are the units :func:`selected_step` treats as independent."""
  records = list(log_dir.metrics.records())
  if any("per_state" not in r for r in records):
    raise ValueError(f"{log_dir.path} logs no per-state bounds (a run from before they were "
                     "logged); start a fresh run")
  curve = [(r["step"], r["bound_per_particle"]) for r in records]
  if not records:
    return curve, np.zeros((0, 0))
  states = np.asarray([r["per_state"] for r in records], np.float64)
  blocks = {r.get("blocks", states.shape[1]) for r in records}
  if len(blocks) != 1:
    raise ValueError(f"{log_dir.path} logs entries with different blocks {sorted(blocks)}")
  return curve, block_means(states, blocks.pop())


def selection_gains(per_block) -> tuple[np.ndarray, np.ndarray]:
  """``(gain [S], se [S])`` from ``per_block [S, C]``, the bounds of S networks (the
  first the start) on C >= 2 independent units (states, or blocks of a chain's states,
  :func:`selection_log`): each one's mean gain over the start and its paired standard
  error, ``sd(v_s - v_0) / sqrt(C)`` (sample sd, C - 1 degrees of freedom; 0 for the
  start), in the bounds' units (nats per unit time per particle)."""
  units = np.asarray(per_block, np.float64)
  if units.ndim != 2 or units.shape[0] < 1 or units.shape[1] < 2:
    raise ValueError(f"per_block must be [S >= 1, C >= 2] bounds, got shape {units.shape}")
  gains = units - units[:1]
  return gains.mean(axis=1), gains.std(axis=1, ddof=1) / math.sqrt(units.shape[1])


def _check_margin(margin, name: str = "margin") -> float:
  margin = float(margin)
  if not (math.isfinite(margin) and margin >= 0):
    raise ValueError(f"{name} must be a finite number >= 0, got {margin}")
  return margin


def selection_threshold(margin: float, units: int) -> float:
  """How many paired standard errors a gain needs over ``units`` independent units: the
  one-sided Student t quantile with ``units - 1`` degrees of freedom at the level of
  ``margin`` normal standard errors, ``t.isf(norm.sf(margin), units - 1)`` (margin 2:
  level 2.3%; 13.97 standard errors for 2 units, 3.31 for 4, 2.18 for 16, toward 2 for
  many), since the standard error is itself estimated from the units; 0 for margin 0."""
  margin = _check_margin(margin)
  if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units < 2:
    raise ValueError(f"units must be an int >= 2, got {units!r}")
  if margin == 0:
    return 0.0
  import scipy.stats                                    # (only a margin needs it)
  return float(scipy.stats.t.isf(scipy.stats.norm.sf(margin), int(units) - 1))


def selection_rule(margin: float, units: int) -> str:
  """:func:`selected_step`'s rule at ``margin`` with ``units`` independent chains, in
  words (for ``table.md`` and the benchmarks' tables)."""
  margin = _check_margin(margin)
  if not margin:
    return "the highest bound, with no margin"
  return (f"a step beats the start only with a gain of more than "
          f"{selection_threshold(margin, units):.3g} paired standard errors of the "
          f"{units} chains' mean gains, a t test at the level of {margin:g} normal "
          f"standard errors")


def selected_step(curve, per_block=None, margin: float = 0.0) -> int:
  """The step of the network :func:`bound_monitor` keeps, from ``curve = [(step,
  bound), ...]`` whose first entry is the start: the highest bound (the earliest of
  equal ones) among the start and the steps that qualify. With ``margin = 0`` every
  step does; with ``margin > 0`` and ``per_block [len(curve), C]``, each entry's bounds
  on C independent units (:func:`selection_log`), a step qualifies only where its mean
  gain over the start exceeds :func:`selection_threshold` ``(margin, C)`` paired
  standard errors (:func:`selection_gains`; a one-sided t test of the gain at the level
  of ``margin`` normal standard errors), so that a gain within the noise of the
  validation states does not replace the start. States of one chain are correlated (for
  about ``1 / gamma``), so the experiment's units are its chains, not its states."""
  if not len(curve):
    raise ValueError("curve is empty: no bound was logged")
  margin = _check_margin(margin)
  qualified = list(curve)
  if margin > 0:
    shape = None if per_block is None else np.shape(per_block)
    if shape is None or len(shape) != 2 or shape[0] != len(curve) or shape[1] < 2:
      raise ValueError(f"margin > 0 needs per_block [len(curve) = {len(curve)}, C >= 2], got "
                       f"{shape}")
    gain, se = selection_gains(per_block)
    threshold = selection_threshold(margin, shape[1])
    qualified = [c for i, c in enumerate(curve) if i == 0 or gain[i] > threshold * se[i]]
  return int(max(qualified, key=lambda c: (c[1], -c[0]))[0])


def selected_network(log_dir: RunDir, like, margin: float = 0.0):
  """``(step, params)`` of the network chosen in the log of a :func:`bound_monitor` with
  ``select_from`` (:func:`selected_step` with ``margin``, the monitor's), restored from
  ``log_dir / "best"`` into the structure of ``like``; raises ``ValueError`` when the log
  is empty and ``RuntimeError`` when that network was not saved."""
  step = selected_step(*selection_log(log_dir), margin)
  try:
    return step, checkpoint.restore_step(log_dir.path / "best", step, like)
  except checkpoint.CheckpointError as e:
    raise RuntimeError(f"the best network (step {step}) of {log_dir.path} was not saved: "
                       f"{e}") from None


def training_loss(net, params: active.AOUPParams, cfg: Config,
                  features_fn: Optional[Callable] = None) -> Callable:
  """``loss(net_params, x [B, 2, N, 2], fields, key) -> []``: the training loss of
  ``cfg.score_loss`` for :func:`local_score`'s form of ``net``, per state (in units of
  inverse squared g for the implicit score matching terms). ``fields = (f [B, N, 2],
  div [B, N])`` are the states' slaved-mode fields (``shift_slaved``) or ``None``.

  "ism_g_only": ``prod.local_implicit_score_matching_loss`` on g (Hyvarinen 2005; the
  term the hypoelliptic rate of Boffi & Vanden-Eijnden, PNAS 2024, needs); "ism_g" adds
  antithetic denoising score matching of the positions (noise ``dsm_sigma_x``), which the
  slaved-mode field, a g-part, does not touch; "dsm": denoising score matching of the
  whole state. Each implicit term is on ``query_size`` random particles per state. With
  fields and ``correction_penalty = lambda > 0`` the loss adds ``(lambda / 2) (N / M)
  sum_{i in Q} |s_g,i - (f_i - g_i)|^2`` on another ``M = query_size`` random particles
  ``Q``: a ridge penalty on the network's correction to the slaved-mode score."""
  sigma = jnp.array([cfg.dsm_sigma_x, cfg.dsm_sigma_g]).reshape(2, 1, 1)
  lam = cfg.correction_penalty

  def ism(p, xb, fb, k):
    if fb is None and lam:
      raise ValueError(f"correction_penalty ({lam}) needs the slaved-mode fields of the states")
    if fb is None:
      score = local_score(net, p, params, cfg, features_fn)
      return prod.local_implicit_score_matching_loss(score, xb, (1,), cfg.query_size, k)

    def one(z, f, div, kk):
      score = local_score(net, p, params, cfg, features_fn, (f, div))
      if not lam:
        return prod.local_implicit_score_matching_loss(score, z[None], (1,), cfg.query_size,
                                                       kk)
      k1, k2 = jax.random.split(kk)
      n = z.shape[1]
      q = jax.random.choice(k2, n, (cfg.query_size,), replace=False)
      correction = score(z, q)[1] - (f[q] - z[1][q])
      return (prod.local_implicit_score_matching_loss(score, z[None], (1,), cfg.query_size,
                                                      k1)
              + 0.5 * lam * (n / cfg.query_size) * jnp.sum(correction ** 2))

    return jnp.mean(jax.vmap(one)(xb, *fb, jax.random.split(k, xb.shape[0])))

  def loss(p, xb, fb, k):
    # Noisy positions are folded back into the box before the network sees them.
    if cfg.score_loss == "dsm":
      return prod.denoising_score_matching_loss(score_function(net, p, params, cfg,
                                                               features_fn),
                                                xb, k, sigma)
    if cfg.score_loss == "ism_g_only":
      return ism(p, xb, fb, k)
    k1, k2 = jax.random.split(k)
    # The position part is unaffected by the slaved-mode field (a g-part).
    score = local_score(net, p, params, cfg, features_fn)
    return ism(p, xb, fb, k1) + prod.local_denoising_score_matching_loss(
        score, xb, k2, cfg.dsm_sigma_x, (0,), cfg.query_size)

  return loss


def train_score(cfg: Config, params: active.AOUPParams, train_x: np.ndarray, run_dir: RunDir,
                resume: bool, subdir: str = "train", monitor_x: Optional[np.ndarray] = None,
                features_fn: Optional[Callable] = None,
                fields: Optional[tuple[np.ndarray, np.ndarray]] = None,
                monitor_fields: Optional[tuple[np.ndarray, np.ndarray]] = None,
                select_x: Optional[np.ndarray] = None,
                select_fields: Optional[tuple[np.ndarray, np.ndarray]] = None,
                select_chains: Optional[int] = None):
  """The score network of ``cfg`` trained on ``train_x [B, 2, N, 2]`` (checkpointed under
  ``run_dir / subdir``); ``features_fn`` as in :func:`local_score`. With ``fields = (f
  [B, N, 2], div [B, N])``, the slaved-mode fields of ``train_x``
  (:func:`slaved_mode_fields`; ``monitor_fields`` those of ``monitor_x``), the network
  learns the correction to that score (``shift_slaved``, implicit score matching
  losses only), starting from it (a zero readout); the loss is :func:`training_loss`'s,
  with ``cfg.correction_penalty``'s ridge term on that correction.

  With validation states ``select_x [V, 2, N, 2]`` (eps = 0; ``select_fields`` their
  slaved-mode fields), the lower bound per particle on them is logged for the initial
  network and after each chunk (``run_dir / subdir / "select"``, :func:`bound_monitor`)
  and the network returned is the one with the highest, not the last, among the start
  and the steps whose gain over it passes :func:`selected_step`'s t test at the level of
  ``cfg.selection_margin`` normal standard errors over ``select_chains`` independent
  units, the equal consecutive blocks of ``select_x`` (one per chain; ``None``: every
  state its own): early stopping against over-fitting, which never returns a network
  below the initial one on those states (with ``fields``, the slaved-mode score).
  Returns ``(net, params)``."""
  if select_x is not None and params.epsilon != 0:
    raise ValueError(f"select_x selects by the eps = 0 bound, got epsilon {params.epsilon}")
  train_dir = RunDir(run_dir.path / subdir)
  if not resume and checkpoint.all_steps(train_dir.checkpoint_dir):
    raise ValueError(f"{train_dir.path} already holds checkpoints; pass resume=True to "
                     "continue, or use a fresh run_dir")
  for name, f, x in (("fields", fields, train_x), ("monitor_fields", monitor_fields,
                                                     monitor_x),
                     ("select_fields", select_fields, select_x)):
    if f is None:
      continue
    if cfg.score_loss == "dsm":
      raise ValueError(f"{name} need an implicit score matching loss, got score_loss 'dsm'")
    if x is None or (np.shape(f[0]), np.shape(f[1])) != (np.shape(x[:, 1]), np.shape(x)[:1]
                                                        + np.shape(x)[2:3]):
      raise ValueError(f"{name} must be (f [B, N, 2], div [B, N]) of its states, got shapes "
                       f"{tuple(np.shape(a) for a in f)}")
  if select_x is not None:
    units = state_blocks(len(select_x), select_chains, "select_chains")
    if cfg.selection_margin and units < 2:
      raise ValueError(f"selection_margin ({cfg.selection_margin}) needs at least 2 "
                       f"independent units in select_x (select_chains), got {units}")
  if cfg.correction_penalty and fields is None:
    raise ValueError(f"correction_penalty ({cfg.correction_penalty}) needs the slaved-mode "
                     "fields of train_x")
  net = LocalTransformer(num_neighbors=cfg.num_neighbors, width=cfg.width, depth=cfg.depth,
                         zero_readout=fields is not None)
  xj = jnp.asarray(train_x)
  init = init_network(net, params, cfg, xj[0], jax.random.key(cfg.seed))
  fj = None if fields is None else tuple(jnp.asarray(a, jnp.float32) for a in fields)

  def batch_fn(k, step):
    k1, k2 = jax.random.split(k)
    i = jax.random.randint(k1, (cfg.batch_size,), 0, xj.shape[0])
    return xj[i], None if fj is None else (fj[0][i], fj[1][i]), k2

  loss = training_loss(net, params, cfg, features_fn)
  loss_fn = lambda p, batch: loss(p, *batch)

  monitor_dir, select_dir = RunDir(train_dir.path / "monitor"), RunDir(train_dir.path / "select")
  if not resume:  # nothing of an earlier run in this directory is taken as this run's
    for log_dir in (monitor_dir, select_dir):
      log_dir.metrics.truncate_after(-1)
    shutil.rmtree(select_dir.path / "best", ignore_errors=True)
  callbacks = []
  if monitor_x is not None and params.epsilon == 0:
    callbacks.append(bound_monitor(net, params, monitor_x, cfg, monitor_dir, features_fn,
                                   monitor_fields))
  if select_x is not None:
    callbacks.append(bound_monitor(net, params, select_x, cfg, select_dir, features_fn,
                                   select_fields, select_from=init,
                                   margin=cfg.selection_margin, blocks=select_chains))
  trained = fit_adam_cosine(loss_fn, init, jax.random.key(cfg.seed + 1),
                            num_steps=cfg.train_steps, learning_rate=cfg.learning_rate,
                            batch_fn=batch_fn, run_dir=train_dir,
                            resume=resume, progress=cfg.progress,
                            callback=(lambda *a: [c(*a) for c in callbacks]) if callbacks
                            else None)
  if select_x is None:
    return net, trained
  return net, selected_network(select_dir, init, cfg.selection_margin)[1]


@functools.lru_cache(maxsize=32)
def _evaluation_program(net, params: active.AOUPParams, cfg: Config) -> Callable:
  """One jitted program per network, system and config (and, inside ``jax.jit``, per
  shape) that returns :func:`evaluate`'s arrays for ``(net_params, x [B, 2, N, 2])``. A
  resumed run and every transfer system with the same shapes reuse it, where fresh
  closures would be traced and compiled again for each call."""
  drift = lambda z: active.aoup_drift(z, params)

  @jax.jit
  def program(net_params, x, fields):
    diffusion = jnp.broadcast_to(active.aoup_diffusion(params), x.shape[1:])

    def one(args):
      z, slaved = args[0], (None if fields is None else args[1:])
      score = score_function(net, net_params, params, cfg, slaved=slaved)
      local = prod.entropy_production_rate(drift, score, diffusion, z[None], local=True)
      return local, prod.probability_flow_velocity(drift, score, diffusion)(z), score(z)

    local, v, s = jax.lax.map(one, (x,) if fields is None else (x, *fields))
    out = {"per_particle": local.sum(axis=(1, 3)),                # [B, N]
           "resid": jnp.mean(jnp.sum(v * s, axis=(1, 2, 3))),
           "scale": jnp.mean(jnp.sqrt(jnp.sum(v * v, axis=(1, 2, 3))
                                      * jnp.sum(s * s, axis=(1, 2, 3)))),
           # The rate without a score (phase-space contraction at eps = 0), exact in
           # expectation over the stationary density: the reference the learned numbers
           # are measured against.
           "free": active.aoup_score_free_entropy_production(
               x, params, local=True, max_neighbors=64, max_per_cell=48),  # [B, N]
           # each particle's local packing, for the groups and the profile
           "packing": jax.lax.map(lambda z: active.local_packing_fraction(z, params),
                                  x[:, 0])}
    if params.epsilon == 0:
      out["bound"] = network_bound(net, net_params, params, cfg, x, fields)     # [B, N]
    return out

  return program


def evaluate(net, net_params, params: active.AOUPParams, x: np.ndarray,
             cfg: Config, fields: Optional[tuple[np.ndarray, np.ndarray]] = None) -> dict:
  """On samples ``x [B, 2, N, 2]`` (with their slaved-mode ``fields``, as in
  :func:`network_bound`): the total and per-particle plug-in EPR (hypoelliptic
  or elliptic by ``params.epsilon``), the stationarity residual, and with eps = 0 the
  lower bound ``prod.hypoelliptic_entropy_production_bound`` (total and per particle),
  which needs samples independent of the training data to hold."""
  # Committed, as parameters restored from a checkpoint are: one compiled program for both.
  fj = None if fields is None else tuple(jnp.asarray(a, jnp.float32) for a in fields)
  net_params, xj, fj = devices.commit((net_params, jnp.asarray(x), fj))
  arrays = jax.device_get(_evaluation_program(net, params, cfg)(net_params, xj, fj))
  per_particle = np.asarray(arrays["per_particle"])
  resid, scale = float(arrays["resid"]), float(arrays["scale"])
  total = float(per_particle.sum(axis=1).mean())
  if not math.isfinite(total):
    raise FloatingPointError(f"the EPR estimate is {total}")
  out = {"epr_total": total, "epr_per_particle": total / x.shape[2],
         "stationarity_relative": resid / scale if scale > 0 else float("nan"),
         "per_particle": per_particle, "bound_total": None, "bound_per_particle": None,
         "bound_local": None}
  free = np.asarray(arrays["free"])
  out.update(score_free_per_particle=float(free.sum(axis=1).mean() / x.shape[2]))
  if params.epsilon == 0:
    bound = np.asarray(arrays["bound"])
    total_bound = float(bound.sum(axis=1).mean())
    if not math.isfinite(total_bound):
      raise FloatingPointError(f"the EPR bound is {total_bound}")
    out.update(bound_total=total_bound, bound_per_particle=total_bound / x.shape[2],
               bound_local=bound)
  # Where it is produced: per-particle means over particles grouped by local packing
  # (phase_fractions' thresholds; the middle group holds the cluster interfaces), and
  # in finer bins of it.
  packing = np.asarray(arrays["packing"])
  groups = active.group_by_packing(packing)
  out.update(packing=packing, score_free_local=free)
  out["by_packing"] = {
      name: {"share": float(mask.mean()),
             "epr": float(per_particle[mask].mean()) if mask.any() else None,
             "bound": (float(out["bound_local"][mask].mean())
                       if mask.any() and out["bound_local"] is not None else None),
             "score_free": float(free[mask].mean()) if mask.any() else None}
      for name, mask in groups.items()}
  return out


# local_packing_fraction per centre within its default probe (R = 3a, d = 2): (a / R)^d.
PACKING_PER_CENTRE = (1 / 3) ** 2


def packing_profile(packing: np.ndarray, columns: Mapping[str, Optional[np.ndarray]],
                    per_centre: float = PACKING_PER_CENTRE) -> list[dict]:
  """Per-particle means by local packing: ``packing [B, N]``
  (``active.local_packing_fraction`` of each particle, a count of centres within the
  probe times ``per_centre``) and per-particle ``columns`` ``{name: [B, N]}`` (``None``
  columns left out) -> one row per count ``k`` from 1 to the largest,
  ``{"centres": k, "packing": k per_centre, "share": fraction of the particles, name:
  mean or None where no particle has that count}``. Shows whether the entropy is
  produced at the intermediate packing of the cluster interfaces or in the dense bulk;
  the share-weighted means give back each column's mean per particle."""
  packing = np.asarray(packing, np.float64)
  if not per_centre > 0:
    raise ValueError(f"per_centre must be > 0, got {per_centre}")
  if packing.size == 0 or not np.all(np.isfinite(packing)):
    raise ValueError("packing must be a non-empty array of finite values")
  counts = np.rint(packing / per_centre).astype(int)
  if np.any(counts < 1) or not np.allclose(counts * per_centre, packing, rtol=1e-5):
    raise ValueError(f"packing must be whole multiples (>= 1) of per_centre = {per_centre}")
  cols = {k: np.asarray(v, np.float64) for k, v in columns.items() if v is not None}
  for k, v in cols.items():
    if v.shape != packing.shape:
      raise ValueError(f"column {k!r} has shape {v.shape}, packing {packing.shape}")
  rows = []
  for k in range(1, int(counts.max()) + 1):
    mask = counts == k
    row = {"centres": k, "packing": round(k * per_centre, 6), "share": float(mask.mean())}
    row.update({name: float(v[mask].mean()) if mask.any() else None
                for name, v in cols.items()})
    rows.append(row)
  return rows


# The per-particle arrays [B, N] that evaluate() returns beside its numbers.
PER_PARTICLE_ARRAYS = ("per_particle", "bound_local", "packing", "score_free_local")


def _profile_of(result: dict) -> list[dict]:
  """:func:`packing_profile` of an :func:`evaluate` result (with the slaved-mode bound's
  terms under ``result["slaved"]["local"]`` where there are any)."""
  slaved = result["slaved"]["local"] if "slaved" in result else None
  return packing_profile(result["packing"], {
      "epr": result["per_particle"], "bound": result["bound_local"],
      "slaved_bound": slaved, "score_free": result["score_free_local"]})


# Slaving orders of the slaved-mode score (`active.local_slaved_mode_basis`).
SLAVED_MODE_ORDER = 3


def _slaved_modes_apply(cfg: Config, params: active.AOUPParams) -> bool:
  return params.epsilon == 0 and cfg.slaved_mode_degree >= 0


@functools.lru_cache(maxsize=None)
def _slaved_mode_programs(params: active.AOUPParams, degree: int
                          ) -> tuple[Callable, Callable]:
  """Jitted ``(moments(x [B, 2, N, 2]), fields(c, state [2, N, 2]))`` of the slaved-mode
  score for one system, compiled once per system and process (a resumed run and the
  transfer rows reuse them)."""
  basis = active.local_slaved_mode_basis(params, degree=degree, order=SLAVED_MODE_ORDER)
  moments = jax.jit(lambda x: prod.linear_self_propulsion_moments(basis, x))

  @jax.jit
  def fields(c, state):
    phi, div = basis(state)                                   # [K, N, d], [K, N]
    return jnp.einsum("k,knd->nd", c, phi), c @ div

  return moments, fields


def _resumable_over_states(fn: Callable, x: np.ndarray, path, meta: dict, resume: bool,
                           progress: bool, desc: str, chunk: int) -> list[np.ndarray]:
  """``fn(states [b, 2, N, 2]) -> arrays [b, ...]`` over ``x [B, 2, N, 2]``, ``chunk``
  states at a time in float64, with a progress bar; the stacked results so far are saved
  to ``path`` (npz) after each chunk, and with ``resume`` a file of the same ``meta`` and
  ``B`` is continued where it stopped. Returns the arrays ``[B, ...]``."""
  from tqdm.auto import tqdm
  tag, done, parts = json.dumps(meta, sort_keys=True), 0, None
  if resume and path.exists():
    with np.load(path) as f:
      if str(f["meta"]) == tag and int(f["states"]) == len(x):
        done, parts = int(f["done"]), [f[f"a{i}"] for i in range(int(f["count"]))]
  with tqdm(total=len(x), initial=done, desc=desc, unit="state",
            disable=not progress) as bar, jax.enable_x64(True):
    for start in range(done, len(x), chunk):
      out = [np.asarray(a) for a in fn(jnp.asarray(x[start:start + chunk], jnp.float64))]
      parts = out if parts is None else [np.concatenate([a, b]) for a, b in zip(parts, out)]
      done = min(start + chunk, len(x))
      tmp = path.with_suffix(".tmp.npz")
      np.savez(tmp, meta=tag, states=len(x), done=done, count=len(parts),
               **{f"a{i}": a for i, a in enumerate(parts)})
      tmp.replace(path)
      bar.update(done - start)
  return parts


def fit_slaved_modes(params: active.AOUPParams, degree: int, train_x: np.ndarray,
                     run_dir: RunDir, resume: bool, progress: bool = False,
                     chunk: int = 8) -> np.ndarray:
  """``[(1 + SLAVED_MODE_ORDER)(degree + 1)]`` coefficients of the slaved-mode score
  (``active.local_slaved_mode_basis``) fitted on ``train_x [B, 2, N, 2]``: the
  closed form of ``prod.fit_linear_self_propulsion_score`` (float64), from its
  per-state moments, ``chunk`` states at a time with a progress bar; the moments so far
  are saved after each chunk (``slaved_moments.npz``), so a resumed run starts where
  the last one stopped, and the coefficients to ``slaved_modes.json``, read back from
  there on ``resume``."""
  path = run_dir.path / "slaved_modes.json"
  key = {"basis": "local", "degree": degree, "order": SLAVED_MODE_ORDER}
  if resume and path.exists():
    saved = json.loads(path.read_text())
    if all(saved.get(k) == v for k, v in key.items()):
      return np.asarray(saved["coefficients"], np.float64)
  m, gram = _resumable_over_states(_slaved_mode_programs(params, degree)[0], train_x,
                                   run_dir.path / "slaved_moments.npz", key, resume,
                                   progress, "slaved-mode fit", chunk)
  c = np.linalg.lstsq(gram.mean(0), m.mean(0), rcond=None)[0]
  if not np.all(np.isfinite(c)):
    raise FloatingPointError("the slaved-mode fit has non-finite coefficients")
  write_json(path, {**key, "coefficients": c.tolist()})
  return c


def slaved_mode_fields(params: active.AOUPParams, degree: int, coefficients: np.ndarray,
                       x: np.ndarray, run_dir: RunDir, name: str, resume: bool,
                       progress: bool = False, chunk: int = 8
                       ) -> tuple[np.ndarray, np.ndarray]:
  """The slaved-mode field ``f = sum_k c_k phi_k [B, N, 2]`` of each state of ``x [B, 2,
  N, 2]`` (``active.local_slaved_mode_basis`` with ``coefficients`` ``c``; the score is
  ``s_g = -g + f``) and its per-particle divergences in the own ``g`` ``[B, N]``
  (float64; per unit of ``g``), computed like :func:`fit_slaved_modes`'s moments and
  saved as they go to ``slaved_fields_<name>.npz``, so a killed run resumes them."""
  c = np.asarray(coefficients, np.float64)
  size = (1 + SLAVED_MODE_ORDER) * (degree + 1)
  if c.shape != (size,) or not np.all(np.isfinite(c)):
    raise ValueError(f"coefficients must be {size} finite numbers for degree {degree}, got "
                     f"shape {c.shape}")
  program = _slaved_mode_programs(params, degree)[1]

  def fn(states):
    out = [program(jnp.asarray(c), z) for z in states]
    return np.stack([o[0] for o in out]), np.stack([o[1] for o in out])

  meta = {"degree": degree, "order": SLAVED_MODE_ORDER, "coefficients": c.tolist()}
  f, div = _resumable_over_states(fn, x, run_dir.path / f"slaved_fields_{name}.npz", meta,
                                  resume, progress, f"slaved-mode fields ({name})", chunk)
  return f, div


def evaluate_slaved_modes(params: active.AOUPParams, x: np.ndarray,
                          fields: tuple[np.ndarray, np.ndarray]) -> dict:
  """The slaved-mode score's lower bound on ``x [B, 2, N, 2]`` from its ``fields``
  (:func:`slaved_mode_fields`): per particle ``2 gamma (g_i . f_i - div_i f) - gamma
  |f_i|^2`` (``prod.self_propulsion_bound_terms``, in float64), the mean total per
  particle, the terms ``[B, N]`` and their means by local packing."""
  f, div = fields
  local = prod.self_propulsion_bound_terms(np.asarray(x[:, 1], np.float64), f, div,
                                           params.gamma)
  total = float(local.sum(axis=1).mean())
  if not math.isfinite(total):
    raise FloatingPointError(f"the slaved-mode bound is {total}")
  groups = active.packing_groups(x[:, 0], params)
  return {"bound_per_particle": total / x.shape[2], "local": local,
          "by_packing": {name: float(local[np.asarray(m)].mean()) if np.any(m) else None
                         for name, m in groups.items()}}


def run(cfg: Config, run_dir: RunDir, resume: bool = False) -> Mapping[str, object]:
  cfg.validate()
  sim_dir = run_dir.path / "sim"
  sim_dir.mkdir(parents=True, exist_ok=True)
  params = system(cfg, cfg.n_particles, cfg.packing_fraction)
  clock = {"start": time.perf_counter()}

  def lap(name):
    now = time.perf_counter()
    clock[name] = round(now - clock.pop("start"), 2)
    clock["start"] = now

  chains, relaxation = simulate_chains(cfg, params, cfg.n_particles, cfg.chains, "main",
                                       sim_dir, resume)
  n_train, n_val, n_held = cfg.split()
  train_x = np.concatenate([c[:n_train] for c in chains])
  val_x = np.concatenate([c[n_train:n_train + n_val] for c in chains]) if n_val else None
  test_x = np.concatenate([c[-n_held:] for c in chains])
  lap("simulate_s")
  monitor_x = test_x[:cfg.monitor_states] if cfg.monitor_states else None
  # The slaved-mode score first: the network learns its correction (shift_slaved).
  slaved_c = train_fields = test_fields = val_fields = None
  if _slaved_modes_apply(cfg, params):
    slaved_c = fit_slaved_modes(params, cfg.slaved_mode_degree, train_x, run_dir, resume,
                                cfg.progress)
    test_fields = slaved_mode_fields(params, cfg.slaved_mode_degree, slaved_c, test_x,
                                     run_dir, "test", resume, cfg.progress)
    if cfg.shift_slaved:
      train_fields = slaved_mode_fields(params, cfg.slaved_mode_degree, slaved_c, train_x,
                                        run_dir, "train", resume, cfg.progress)
      if n_val:
        val_fields = slaved_mode_fields(params, cfg.slaved_mode_degree, slaved_c, val_x,
                                        run_dir, "validation", resume, cfg.progress)
    lap("slaved_modes_s")
  on_slaved = train_fields is not None
  net, net_params = train_score(
      cfg, params, train_x, run_dir, resume, monitor_x=monitor_x, fields=train_fields,
      monitor_fields=(tuple(a[:cfg.monitor_states] for a in test_fields)
                      if on_slaved and monitor_x is not None else None),
      select_x=val_x, select_fields=val_fields, select_chains=cfg.chains)
  lap("train_s")
  baseline = None
  base_cfg = dataclasses.replace(cfg, score_loss="dsm", train_steps=cfg.dsm_baseline_steps,
                                 batch_size=cfg.dsm_baseline_batch_size, shift_slaved=False,
                                 correction_penalty=0.0)
  if cfg.dsm_baseline_steps:
    baseline = train_score(base_cfg, params, train_x, run_dir, resume, subdir="train_dsm",
                           monitor_x=monitor_x, select_x=val_x, select_chains=cfg.chains)
    lap("train_dsm_baseline_s")
  # The validation bound of each network over training, and the step chosen.
  selection = {}
  for name, sub in (("main", "train"), ("dsm_baseline", "train_dsm")):
    curve, states = selection_log(RunDir(run_dir.path / sub / "select"))
    if n_val and curve and (sub == "train" or baseline is not None):
      selection[name] = {"step": selected_step(curve, states, cfg.selection_margin),
                         "curve": [list(c) for c in curve], "margin": cfg.selection_margin}
  baseline_rows = {}

  def evaluate_baseline(label, p, x):
    if baseline is not None:
      r = evaluate(*baseline, p, x, base_cfg)
      baseline_rows[label] = {k: r[k] for k in ("epr_per_particle", "bound_per_particle",
                                                "stationarity_relative")}

  main = evaluate(net, net_params, params, test_x, cfg, test_fields if on_slaved else None)
  evaluate_baseline("trained", params, test_x)
  if slaved_c is not None:
    main["slaved"] = evaluate_slaved_modes(params, test_x, test_fields)
  main["profile"] = _profile_of(main)
  lap("evaluate_s")
  records = list(RunDir(run_dir.path / "train").metrics.records())
  losses = [r["loss"] for r in records]
  curves = {name: bound_curve(RunDir(run_dir.path / sub / "monitor"))
            for name, sub in (("main", "train"), ("dsm_baseline", "train_dsm"))
            if monitor_x is not None and params.epsilon == 0
            and (sub == "train" or baseline is not None)}
  curves = {name: curve for name, curve in curves.items() if curve}
  _plot_map(cfg, params, test_x, main["per_particle"], main["bound_local"], run_dir,
            main["slaved"]["local"] if "slaved" in main else None, main["profile"])
  _plot_training([r["step"] for r in records], losses, curves, run_dir)

  transfer = {}
  big_n = cfg.n_particles * cfg.transfer_factor
  targets = [(f"N={big_n}", big_n, cfg.packing_fraction)]
  targets += [(f"phi={phi}", cfg.n_particles, phi) for phi in cfg.transfer_packing]
  for label, n, phi in targets:
    p = system(cfg, n, phi)
    x, relax = simulate_chains(cfg, p, n, 1, label.replace("=", ""), sim_dir, resume)
    held, fields = x[0, -n_held:], None
    if slaved_c is not None:
      fields = slaved_mode_fields(p, cfg.slaved_mode_degree, slaved_c, held, run_dir,
                                  label.replace("=", ""), resume, cfg.progress)
    result = evaluate(net, net_params, p, held, cfg, fields if on_slaved else None)
    evaluate_baseline(label, p, held)
    if slaved_c is not None:
      result["slaved"] = evaluate_slaved_modes(p, held, fields)
    result["profile"] = _profile_of(result)
    if "slaved" in result:
      result["slaved"] = {k: v for k, v in result["slaved"].items() if k != "local"}
    transfer[label] = {k: v for k, v in result.items() if k not in PER_PARTICLE_ARRAYS}
    transfer[label].update(dense=relax[-1]["dense"], dilute=relax[-1]["dilute"])
  lap("transfer_s")
  clock.pop("start")

  main.update(dense=relaxation[-1]["dense"], dilute=relaxation[-1]["dilute"])
  rows = [("trained", cfg.n_particles, cfg.packing_fraction, main)]
  rows += [(label, n, phi, transfer[label]) for label, n, phi in targets]
  lines = ["| system | N | packing | EPR total | EPR per particle | lower bound per particle | "
           "slaved-mode bound per particle | score-free EPR per particle | "
           "E[v.s] / E[|v||s|] | dense / dilute share at the end |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
  for label, n, phi, r in rows:
    bound = "-" if r["bound_per_particle"] is None else f"{r['bound_per_particle']:.4g}"
    slaved = f"{r['slaved']['bound_per_particle']:.4g}" if "slaved" in r else "-"
    lines.append(f"| {label} | {n} | {phi} | {r['epr_total']:.4g} | "
                 f"{r['epr_per_particle']:.4g} | {bound} | {slaved} | "
                 f"{r['score_free_per_particle']:.4g} | {r['stationarity_relative']:+.3f} | "
                 f"{r['dense']:.3f} / {r['dilute']:.3f} |")
  fmt = lambda v: "-" if v is None else f"{v:.3g}"
  lines += ["", "Per-particle means by local packing (`local_packing_fraction`: dilute <= 0.3, "
            "dense >= 0.7, intermediate between, where the cluster interfaces are): share "
            "of particles, plug-in EPR, lower bound, score-free term:", "",
            "| system | dilute | intermediate | dense |", "| --- | --- | --- | --- |"]
  for label, _, _, r in rows:
    lines.append(f"| {label} | " + " | ".join(
        f"{g['share']:.2f}: {fmt(g['epr'])} / {fmt(g['bound'])} / {fmt(g['score_free'])}"
        for g in (r["by_packing"][k] for k in ("dilute", "intermediate", "dense"))) + " |")
  names = [("epr", "plug-in EPR"), ("bound", "lower bound"),
           ("slaved_bound", "slaved-mode bound"), ("score_free", "score-free term")]
  for label, _, _, r in rows:
    cols = [(k, title) for k, title in names if k in r["profile"][0]]
    lines += ["", f"{label}: per-particle means by the number of centres within 3 radii "
              "(itself included; local packing = that number / 9; `packing_profile`):", "",
              "| centres | local packing | share | " + " | ".join(t for _, t in cols) + " |",
              "| ---: | ---: | ---: | " + " | ".join("---:" for _ in cols) + " |"]
    lines += [f"| {b['centres']} | {b['packing']:.3f} | {b['share']:.3f} | "
              + " | ".join(fmt(b[k]) for k, _ in cols) + " |"
              for b in r["profile"] if b["share"] > 0]
  slaved_rows = [(label, r["slaved"]) for label, _, _, r in rows if "slaved" in r]
  if slaved_rows:
    lines += ["", "Slaved-mode score, no network: `active.local_slaved_mode_basis` with "
              f"powers of the position Jacobian up to {cfg.slaved_mode_degree} and "
              f"{SLAVED_MODE_ORDER} slaving orders, fitted in closed form on the training "
              "states (`prod.fit_linear_self_propulsion_score`) and applied unchanged to every "
              "system; its lower bound "
              "(`prod.linear_self_propulsion_bound`) per particle, by local packing:", "",
              "| system | all | dilute | intermediate | dense |", "| --- | --- | --- | --- | --- |"]
    for label, r in slaved_rows:
      lines.append(f"| {label} | {r['bound_per_particle']:.4g} | " + " | ".join(
          fmt(r["by_packing"][k]) for k in ("dilute", "intermediate", "dense")) + " |")
  if baseline_rows:
    lines += ["", f"Baseline: the same network trained by denoising score matching (noise "
              f"{cfg.dsm_sigma_x} on x and {cfg.dsm_sigma_g} on g) for "
              f"{cfg.dsm_baseline_steps} steps at batch {cfg.dsm_baseline_batch_size}, on "
              "the same samples and evaluated on the same states; per particle:", "",
              "| system | EPR (plug-in) | lower bound | E[v.s] / E[|v||s|] |",
              "| --- | --- | --- | --- |"]
    for label, r in baseline_rows.items():
      lines.append(f"| {label} | {r['epr_per_particle']:.4g} | "
                   f"{fmt(r['bound_per_particle'])} | {r['stationarity_relative']:+.3f} |")
  lines += ["", "EPR: the plug-in gamma E|g + s_g|^2 of the learned score"
            + (" (the network's correction added to the slaved-mode score, s_g = -g + f + "
               "NN_g / sqrt(gamma))" if on_slaved else "") + ". Lower bound: "
            "`hypoelliptic_entropy_production_bound`, 2 gamma [L(-g) - L(s)] with L the "
            "implicit score matching loss of s_g; it holds on samples independent of the "
            "training data: the transfer rows are fresh chains, while the trained row's "
            "held-out states come from the training chains (their self-propulsions "
            "persist for 1/gamma). Score-free: "
            "`aoup_score_free_entropy_production`, the same rate from the states alone "
            "(at eps = 0 the mean phase-space contraction -div_x b_x of the positions), "
            "exact in expectation over the stationary density and needing no network; "
            "its per-particle terms sum to the rate but are a different local density "
            "from the plug-in terms."]
  if curves:
    lines += ["", f"Lower bound per particle during training, on the first {len(monitor_x)} "
              "held-out states (`bound_monitor`, after each chunk):", "",
              "| network | step: bound |", "| --- | --- |"]
    for name, curve in curves.items():
      lines.append(f"| {name} | " + ", ".join(f"{st:,}: {b:.3g}" for st, b in curve) + " |")
  if selection:
    lines += ["", f"Lower bound per particle on the {len(val_x)} validation states (the "
              "samples before each chain's held-out ones, not trained on) at the start and "
              "after each chunk; the network evaluated above is the one at the step in "
              "bold (`train_score`'s `select_x`; "
              f"{selection_rule(cfg.selection_margin, cfg.chains)}):", "",
              "| network | step: bound |", "| --- | --- |"]
    for name, sel in selection.items():
      lines.append(f"| {name} | " + ", ".join(
          (f"**{st:,}: {b:.3g}**" if st == sel["step"] else f"{st:,}: {b:.3g}")
          for st, b in sel["curve"]) + " |")
  start = ("uniform positions, an ideal gas" if cfg.initial_spread is None
           else f"a clump of spread {cfg.initial_spread} L")
  lines += ["", "Relaxation of the main chains (shares of particles with local packing >= 0.7 "
            f"and <= 0.3; step 0 is the random start: {start}):", "",
            "| step | dense | dilute | dense per chain |", "| ---: | ---: | ---: | --- |"]
  lines += [f"| {r['step']:,} | {r['dense']:.3f} | {r['dilute']:.3f} | "
            + ", ".join(f"{v:.3f}" for v in r["dense_per_chain"]) + " |" for r in relaxation]
  (run_dir.path / "table.md").write_text("\n".join(lines) + "\n")
  return {
      "n_particles": cfg.n_particles, "packing_fraction": cfg.packing_fraction,
      "train_samples": int(train_x.shape[0]), "held_out_samples": int(test_x.shape[0]),
      "validation_samples": 0 if val_x is None else int(val_x.shape[0]),
      "epr_total": round(main["epr_total"], 6),
      "epr_per_particle": main["epr_per_particle"],
      "bound_per_particle": main["bound_per_particle"],
      "score_free_per_particle": main["score_free_per_particle"],
      "by_packing": main["by_packing"],
      # per-particle means in bins of local packing (`packing_profile`)
      "packing_profile": main["profile"],
      "slaved_mode_bound_per_particle": (main["slaved"]["bound_per_particle"]
                                         if "slaved" in main else None),
      "slaved_mode_by_packing": main["slaved"]["by_packing"] if "slaved" in main else None,
      "network_on_slaved_modes": on_slaved,
      "dsm_baseline": baseline_rows or None,
      "stationarity_relative": round(main["stationarity_relative"], 4),
      "relaxation": relaxation,
      "final_loss": losses[-1] if losses else None,
      "bound_curves": {k: [[st, b] for st, b in v] for k, v in curves.items()} or None,
      # per network: the step chosen on the validation states, and their bound curve
      "selection": selection or None,
      # wall-clock seconds of each stage on jax.devices()[0] (a resumed run counts only
      # the work it redid)
      "device": jax.devices()[0].device_kind, "seconds": clock,
      "transfer": {k: {kk: (round(vv, 6) if isinstance(vv, float) else vv)
                       for kk, vv in v.items()} for k, v in transfer.items()},
  }


def _plot_map(cfg: Config, params: active.AOUPParams, x: np.ndarray, per_particle: np.ndarray,
              bound: Optional[np.ndarray], run_dir: RunDir,
              slaved: Optional[np.ndarray] = None,
              profile: Optional[list[dict]] = None) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  half = params.half_width
  edges = np.linspace(-half, half, cfg.map_bins + 1)
  pos = x[:, 0].reshape(-1, 2)
  counts, _, _ = np.histogram2d(pos[:, 0], pos[:, 1], bins=[edges, edges])

  def binned(values):
    sums, _, _ = np.histogram2d(pos[:, 0], pos[:, 1], bins=[edges, edges],
                                weights=values.reshape(-1))
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)

  panels = [(counts / counts.sum() * cfg.map_bins ** 2, "density", "viridis"),
            (binned(per_particle), "mean per-particle EPR (plug-in)", "magma")]
  if bound is not None:
    panels.append((binned(bound), "mean per-particle lower bound", "magma"))
  if slaved is not None:
    panels.append((binned(slaved), "slaved-mode lower bound", "magma"))
  extra = profile is not None
  fig, axes = plt.subplots(1, 1 + len(panels) + extra,
                           figsize=(4.7 * (1 + len(panels) + extra), 4.2))
  last = x[-1, 0]
  sc = axes[0].scatter(last[:, 0], last[:, 1], c=per_particle[-1], s=6, cmap="magma")
  fig.colorbar(sc, ax=axes[0], label="per-particle EPR")
  axes[0].set_title("one held-out configuration")
  for ax, (data, title, cmap) in zip(axes[1:], panels):
    im = ax.imshow(data.T, origin="lower", extent=(-half, half, -half, half), cmap=cmap)
    fig.colorbar(im, ax=ax)
    ax.set_title(title)
  for ax in axes[:1 + len(panels)]:
    ax.set_aspect("equal")
  if extra:
    ax = axes[-1]
    kept = [b for b in profile if b["share"] > 0]
    centre = [b["packing"] for b in kept]
    for key, label in (("epr", "plug-in"), ("bound", "lower bound"),
                       ("slaved_bound", "slaved-mode bound"), ("score_free", "score-free")):
      if key in kept[0]:
        ax.plot(centre, [b[key] for b in kept], marker="o", ms=3, label=label)
    share = ax.twinx()
    share.bar(centre, [b["share"] for b in kept], width=0.8 * PACKING_PER_CENTRE, alpha=0.15,
              color="grey")
    share.set_ylabel("share of particles")
    ax.set_zorder(share.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.set_xlabel("local packing")
    ax.set_ylabel("per-particle rate")
    ax.set_title("by local packing")
    ax.legend(fontsize=7)
  fig.suptitle(f"MIPS, N={cfg.n_particles}, phi={cfg.packing_fraction}, v0={cfg.v0}, "
               f"gamma={cfg.gamma}")
  fig.tight_layout()
  fig.savefig(run_dir.figure_path("local_epr"), dpi=110)
  plt.close(fig)


def _plot_training(steps, losses, curves, run_dir: RunDir) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, 1 + bool(curves), figsize=(5 + 4.5 * bool(curves), 3.5),
                           squeeze=False)
  axes[0, 0].plot(steps, losses, "o-")
  axes[0, 0].set_xlabel("step")
  axes[0, 0].set_ylabel("training loss (chunk mean)")
  for name, curve in curves.items():
    axes[0, 1].plot(*zip(*curve), "o-", label=name)
  if curves:
    axes[0, 1].set_xlabel("step")
    axes[0, 1].set_ylabel("lower bound per particle (held-out)")
    axes[0, 1].legend()
  fig.tight_layout()
  fig.savefig(run_dir.figure_path("training"), dpi=110)
  plt.close(fig)


experiments.register(
    "active_matter",
    "MIPS of active OU particles: local-transformer score, total and spatial entropy "
    "production, transfer to larger systems (Boffi & Vanden-Eijnden 2024)",
    PRESETS,
    run,
)
