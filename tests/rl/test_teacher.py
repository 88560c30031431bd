"""The self-paced Gamma teacher of QARL against scipy and brute-force references."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, optimize, special, stats

from entropylab import rl
from entropylab.rl import teacher as tch


def _kl_by_quadrature(a_p, a_q, rate):
  p, q = stats.gamma(a_p, scale=1 / rate), stats.gamma(a_q, scale=1 / rate)
  f = lambda t: p.pdf(t) * (p.logpdf(t) - q.logpdf(t))
  lo, hi = p.ppf(1e-14), p.ppf(1 - 1e-14)
  return integrate.quad(f, lo, hi, points=[p.mean()], limit=400, epsabs=1e-12)[0]


@pytest.mark.parametrize("a_p, a_q, rate", [(50.0, 1.0, 1000.0), (2.5, 7.0, 1.0),
                                            (1.0, 50.0, 1000.0), (3.0, 3.0, 5.0)])
def test_gamma_kl_matches_quadrature(x64, a_p, a_q, rate):
  ref = _kl_by_quadrature(a_p, a_q, rate)
  assert abs(float(rl.gamma_kl(a_p, a_q)) - ref) < 1e-7 * max(1.0, ref)
  t = np.array([1e-4, 3e-3, 0.05, 0.2])
  np.testing.assert_allclose(rl.gamma_log_density(t, a_p, rate),
                             stats.gamma(a_p, scale=1 / rate).logpdf(t), rtol=1e-10)


def _weighted_return(c, c_old, t, r, rate):
  lw = stats.gamma(c, scale=1 / rate).logpdf(t) - stats.gamma(c_old, scale=1 / rate).logpdf(t)
  return float(np.mean(np.exp(lw) * r))


def _brute_force(c_old, target, t, r, cfg, points=100_001):
  """Smallest KL to the target over a fine grid of feasible concentrations (scipy)."""
  grid = np.exp(np.linspace(np.log(c_old), np.log(target), points))
  kl_old = (grid - c_old) * special.digamma(grid) - special.gammaln(grid) + special.gammaln(c_old)
  lw = (stats.gamma(grid[:, None], scale=1 / cfg.rate).logpdf(t[None])
        - stats.gamma(c_old, scale=1 / cfg.rate).logpdf(t[None]))
  est = np.mean(np.exp(lw) * r[None], axis=1)
  ok = (kl_old <= cfg.max_kl) & (est >= cfg.return_floor)
  kl_target = ((grid - target) * special.digamma(grid) - special.gammaln(grid)
               + special.gammaln(target))
  return grid[np.argmin(np.where(ok, kl_target, np.inf))]


@pytest.mark.parametrize("seed", range(4))
def test_update_keeps_both_constraints_and_matches_brute_force(x64, seed):
  """Returns that fall with the temperature (a stronger adversary at low temperature):
  the return floor or the trust region binds. The new concentration keeps
  KL(new || old) <= max_kl and the importance-weighted return >= the floor (both
  checked with scipy), and lies within one search step of a 100,001-point brute force."""
  rng = np.random.default_rng(seed)
  cfg = rl.GammaTeacherConfig(return_floor=10.0, grid_size=512)
  c_old = [50.0, 20.0, 6.0, 2.0][seed]
  t = rng.gamma(c_old, 1 / cfg.rate, size=30)
  r = 10.0 + 4000.0 * (t - 0.6 * c_old / cfg.rate) + rng.normal(0, 0.5, size=30)
  r = r - min(0.0, r.mean() - 10.5)  # the current distribution meets the floor
  state = rl.TeacherState(jnp.asarray(c_old), jnp.asarray(0))
  new, info = rl.teacher_update(state, t, r, cfg)
  c = float(new.concentration)
  assert bool(info.met_floor)
  assert float(rl.gamma_kl(c, c_old)) <= cfg.max_kl + 1e-12
  assert _weighted_return(c, c_old, t, r, cfg.rate) >= cfg.return_floor - 1e-9
  assert c < c_old and int(new.updates) == 1
  step = math.log(c_old / cfg.target_concentration) / (cfg.grid_size - 1)
  assert abs(math.log(c) - math.log(_brute_force(c_old, 1.0, t, r, cfg))) <= 1.01 * step


def test_trust_region_alone_gives_the_kl_root(x64):
  """With returns far above the floor only the trust region binds: each update moves
  to the smallest c with KL(c || c_old) = max_kl (scipy's brentq), and the chain of
  updates reaches the target and stays there."""
  cfg = rl.GammaTeacherConfig(return_floor=0.0, grid_size=2048)
  rng = np.random.default_rng(3)
  state = rl.teacher_init(cfg)
  path = [float(state.concentration)]
  for _ in range(40):
    c_old = path[-1]
    t = rng.gamma(c_old, 1 / cfg.rate, size=30)
    state, info = rl.teacher_update(state, t, np.full(30, 1e6), cfg)
    path.append(float(state.concentration))
    assert float(info.kl_to_old) <= cfg.max_kl + 1e-12
    if c_old > 1.0 and float(rl.gamma_kl(1.0, c_old)) > cfg.max_kl:
      root = optimize.brentq(lambda c: float(rl.gamma_kl(c, c_old)) - cfg.max_kl, 1.0, c_old,
                             xtol=1e-12)
      step = math.log(c_old) / (cfg.grid_size - 1)
      assert 0 <= math.log(path[-1]) - math.log(root) <= 1.01 * step
  assert path[-1] == 1.0 and np.all(np.diff(path) <= 0)


def test_frozen_until_the_floor_is_met():
  cfg = rl.GammaTeacherConfig(return_floor=10.0)
  state = rl.teacher_init(cfg)
  t = np.random.default_rng(0).gamma(50.0, 1e-3, size=30)
  new, info = rl.teacher_update(state, t, np.full(30, 9.9), cfg)
  assert float(new.concentration) == 50.0 and int(new.updates) == 0
  assert not bool(info.met_floor)
  new, info = rl.teacher_update(state, t, np.full(30, 10.1), cfg)
  assert float(new.concentration) < 50.0 and bool(info.met_floor)


def test_jit_and_vmap_over_teachers_agree_with_eager():
  cfg = rl.GammaTeacherConfig()
  keys = jax.random.split(jax.random.key(0), 3)
  states = rl.TeacherState(jnp.array([50.0, 20.0, 4.0]), jnp.zeros(3, jnp.int32))
  temps = jax.vmap(lambda k, c: rl.sample_temperatures(
      k, rl.TeacherState(c, jnp.asarray(0)), cfg, (30,)))(keys, states.concentration)
  returns = 12.0 - 100.0 * temps
  update = jax.jit(jax.vmap(lambda s, t, r: rl.teacher_update(s, t, r, cfg)))
  batched, _ = update(states, temps, returns)
  for i in range(3):
    one, _ = rl.teacher_update(jax.tree.map(lambda a: a[i], states), np.asarray(temps[i]),
                               np.asarray(returns[i]), cfg)
    np.testing.assert_allclose(batched.concentration[i], one.concentration, rtol=1e-6)


def test_sampled_temperatures_have_the_gamma_mean_and_variance():
  cfg = rl.GammaTeacherConfig()
  state = rl.TeacherState(jnp.asarray(5.0), jnp.asarray(0))
  t = np.asarray(rl.sample_temperatures(jax.random.key(1), state, cfg, (200_000,)))
  assert abs(t.mean() - 5e-3) < 3 * math.sqrt(5e-6 / 200_000)
  assert abs(t.var() / 5e-6 - 1) < 0.02


def test_linear_temperature_schedule():
  vals = rl.linear_temperature(jnp.array([0, 50, 100, 150, 200]), 150)
  np.testing.assert_allclose(vals, [0.05, 0.05 - 0.049 / 2, 0.001, 0.001, 0.001], rtol=1e-5)


def test_bad_input_raises_naming_the_argument():
  cfg = rl.GammaTeacherConfig()
  state = rl.teacher_init(cfg)
  t = np.full(5, 0.05)
  with pytest.raises(ValueError, match="temperatures"):
    rl.teacher_update(state, np.array([0.05, -1.0]), np.ones(2), cfg)
  with pytest.raises(ValueError, match="returns"):
    rl.teacher_update(state, t, np.ones(4), cfg)
  with pytest.raises(ValueError, match="returns"):
    rl.teacher_update(state, t, np.array([1.0, np.nan, 1, 1, 1]), cfg)
  with pytest.raises(ValueError, match="rate"):
    rl.teacher_init(rl.GammaTeacherConfig(rate=-1.0))
  with pytest.raises(ValueError, match="max_kl"):
    rl.teacher_update(state, t, np.ones(5), rl.GammaTeacherConfig(max_kl=0.0))
  with pytest.raises(ValueError, match="grid_size"):
    rl.teacher_init(rl.GammaTeacherConfig(grid_size=1))
  with pytest.raises(ValueError, match="num_iterations"):
    rl.linear_temperature(3, 0)
  assert set(tch.__all__) <= set(rl.__all__)
