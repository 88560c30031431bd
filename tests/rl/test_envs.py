"""The adversary's force wrapper on Brax's mjx environments."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from entropylab.rl import envs


def _rollout(env, pushes, steps):
  """Final body centres of mass ``[len(pushes), nbody, 3]`` after ``steps`` control steps
  from the same reset with zero protagonist action and each fixed adversary action."""

  def run(push):
    state = env.reset(jax.random.key(0))

    def body(s, _):
      return env.step(s, jnp.zeros(env.action_size), push), None

    return jax.lax.scan(body, state, None, length=steps)[0].pipeline_state.xipos

  return np.asarray(jax.jit(jax.vmap(run))(jnp.asarray(pushes, jnp.float32)))


def test_halfcheetah_torso_moves_the_way_it_is_pushed():
  """Finite differences against zero force: +x / -x on the torso moves its centre of
  mass forward / back, +z lifts it; clipping makes an action of 5 act as 1."""
  env = envs.AdversarialEnv("halfcheetah", bodies=("torso",), max_force=40.0)
  pushes = [[0, 0], [1, 0], [-1, 0], [0, 1], [5, 0]]
  pos = _rollout(env, pushes, 10)
  torso = env.body_ids[0]
  dx = pos[:, torso, 0] - pos[0, torso, 0]
  dz = pos[:, torso, 2] - pos[0, torso, 2]
  assert dx[1] > 0.02 and dx[2] < -0.02
  assert dz[3] > 0.005
  np.testing.assert_allclose(pos[4], pos[1], atol=1e-6)


def test_inverted_pendulum_pole_and_zero_sum():
  env = envs.AdversarialEnv("inverted_pendulum", max_force=5.0)
  assert env.adversary_action_size == 2 and env.bodies == ("pole",)
  # The observation is the cart's and pole's positions and velocities (Brax's
  # inverted_pendulum), its size found without running a reset.
  model = env.env.sys.mj_model
  assert env.observation_size == model.nq + model.nv == 4
  pos = _rollout(env, [[0, 0], [1, 0], [-1, 0]], 5)
  pole = env.body_ids[0]
  assert pos[1, pole, 0] > pos[0, pole, 0] + 1e-3 > pos[2, pole, 0] + 2e-3
  r = jnp.array([1.0, -2.5])
  mine, theirs = envs.zero_sum_rewards(r)
  np.testing.assert_array_equal(mine + theirs, 0.0)


def test_forces_rewrite_every_row():
  env = envs.AdversarialEnv("halfcheetah", max_force=2.0)
  f = np.asarray(env.forces(jnp.array([0.5, -1.0, 3.0, 0.0, -0.25, 1.0])))
  expected = np.zeros((env.num_bodies, 6))
  for body, (fx, fz) in zip(env.body_ids, [(1.0, -2.0), (2.0, 0.0), (-0.5, 2.0)]):
    expected[body, [0, 2]] = fx, fz
  np.testing.assert_allclose(f, expected)
  assert [env.body_ids, env.adversary_action_size] == [(1, 4, 7), 6]


def test_bad_names_and_forces_raise_listing_valid_choices():
  with pytest.raises(ValueError, match="halfcheetah"):
    envs.AdversarialEnv("cheetah")
  with pytest.raises(ValueError, match="thigh"):
    envs.AdversarialEnv("hopper", bodies=("head",))
  with pytest.raises(ValueError, match="max_force"):
    envs.AdversarialEnv("hopper", max_force=-1.0)
  env = envs.AdversarialEnv("hopper")
  with pytest.raises(ValueError, match="adversary_action"):
    env.forces(jnp.zeros(3))
  with pytest.raises(ValueError, match="mass_scale"):
    env.system(-1.0, 1.0)
  with pytest.raises(ValueError, match="friction"):
    env.system(1.0, float("nan"))
  with pytest.raises(ValueError, match="size"):
    env.robustness_grid(0)


def test_mass_and_friction_grid_in_one_vmapped_batch():
  """A heavier torso moves less under the same push; on a slippery floor the same
  open-loop gait gets a different displacement than on a grippy one. All four cells run
  in one jitted vmap that swaps the model's parameters."""
  env = envs.AdversarialEnv("halfcheetah", bodies=("torso",), max_force=40.0)
  masses, frictions = env.robustness_grid(11)
  np.testing.assert_allclose([masses[0], masses[-1], frictions[0], frictions[-1]],
                             [0.5, 1.5, 0.1, 1.9], rtol=1e-6)

  def run(mass_scale, friction):
    system = env.system(mass_scale, friction)
    state = env.reset(jax.random.key(0), system=system)

    def body(s, t):
      gait = jnp.sin(0.6 * t + jnp.arange(env.action_size))
      return env.step(s, gait, jnp.array([1.0, 0.0]), system=system), None

    final = jax.lax.scan(body, state, jnp.arange(20.0))[0]
    return final.pipeline_state.xipos[env.body_ids[0], 0]

  grid_m = jnp.array([0.5, 1.5, 0.5, 1.5])
  grid_f = jnp.array([0.1, 0.1, 1.9, 1.9])
  x = np.asarray(jax.jit(jax.vmap(run))(grid_m, grid_f))
  assert x[0] > x[1] and x[2] > x[3]  # heavier: less pushed
  assert abs(x[2] - x[0]) > 0.05  # friction matters
  default = env.system()
  np.testing.assert_array_equal(default.body_mass, env.env.sys.body_mass)
