"""A tiny two-player QARL run: reproducible from its seed, vmapped over seeds, resumable."""

import jax
import numpy as np
import pytest

from entropylab.rl import qarl
from entropylab.rl import teacher as tch
from entropylab.runner import checkpoint, devices

TINY = qarl.QARLConfig(
    env="inverted_pendulum", mode="qarl", max_force=5.0, iterations=3, episodes=2,
    episode_length=16, batch_size=16, replay_size=256, learning_starts=32, hidden=(16, 16),
    teacher_every=4, teacher=tch.GammaTeacherConfig(return_floor=-1e9))


@pytest.fixture(scope="module")
def tiny():
  run = qarl.make_train(TINY)
  step = jax.jit(jax.vmap(run.iteration))
  init = jax.jit(jax.vmap(run.init))
  return init, step, run


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(jax.tree.map(
      lambda v: jax.random.key_data(v) if jax.dtypes.issubdtype(v.dtype, jax.dtypes.prng_key)
      else v, tree))]


def test_seeds_reproduce_resume_and_follow_the_teacher(tiny, tmp_path):
  """Two seeds under vmap: the seeds differ; a second run stopped after iteration 1,
  checkpointed with orbax and restored, ends bit-identical to the uninterrupted run (so
  a rerun from the seed reproduces it); the teacher's mean temperature falls every
  iteration (floor met) within its trust region; replays hold each phase's transitions."""
  init, step, _ = tiny
  keys = jax.random.split(jax.random.key(7), 2)

  def run(state, n):
    out = []
    for _ in range(n):
      state, m = step(state)
      out.append(m)
    return state, out

  # States committed to one device throughout, as the restored ones are: the step is
  # compiled once (an uncommitted start would compile it a second time for the restore).
  start = lambda: devices.commit(init(keys))
  final, metrics = run(start(), 3)
  params = final.protagonist.sac.actor
  assert not np.allclose(*[np.asarray(jax.tree.leaves(params)[0])[i] for i in range(2)])

  first, _ = run(start(), 1)
  checkpoint.save(tmp_path, 1, first)
  del first
  _, restored = checkpoint.restore(tmp_path, jax.eval_shape(lambda: init(keys)))
  resumed, _ = run(restored, 2)
  for a, b in zip(_leaves(resumed), _leaves(final)):
    np.testing.assert_array_equal(a, b)

  mean_t = np.stack([np.asarray(m["teacher_mean_temperature"]) for m in metrics])
  assert np.all(np.diff(mean_t, axis=0) < 0) and np.all(mean_t < 0.05)
  conc = np.concatenate([[50.0, 50.0]], 0)
  for m in metrics:
    new = np.asarray(m["teacher_mean_temperature"]) * TINY.teacher.rate
    assert np.all(np.asarray(tch.gamma_kl(new, conc)) <= TINY.teacher.max_kl + 1e-5)
    conc = new
  per_phase = 3 * TINY.episodes * TINY.episode_length
  np.testing.assert_array_equal(final.protagonist.replay.size, per_phase)
  np.testing.assert_array_equal(final.adversary.replay.size, per_phase)


def test_bad_config_raises():
  with pytest.raises(ValueError, match="mode"):
    qarl.QARLConfig(mode="nash").validate()
  with pytest.raises(ValueError, match="env"):
    qarl.QARLConfig(env="ant").validate()
  with pytest.raises(ValueError, match="teacher_every"):
    qarl.QARLConfig(teacher_every=7).validate()
  with pytest.raises(ValueError, match="max_force"):
    qarl.QARLConfig(max_force=-1.0).validate()


def test_robustness_grid_evaluates_every_cell_on_its_own_system(tiny):
  """The grid's cells see their own pole mass and friction: the returns are not all
  equal, and the default-system cell equals a rollout on the unmodified model."""
  init, step, run = tiny
  # Committed like the states of the test above, so the module's step is compiled once.
  start = devices.commit(init(jax.random.split(jax.random.key(1), 2)))
  state = jax.tree.map(lambda x: x[0], step(start)[0])
  masses, frictions = np.array([0.2, 1.0, 3.0]), np.array([1.0])
  evaluate = jax.jit(run.evaluate, static_argnames="steps")
  grid = np.asarray(evaluate(state, jax.random.key(2), masses, frictions, steps=300))
  assert grid.shape == (3, 1) and np.all(grid > 0) and np.ptp(grid) > 0
  calm = np.asarray(evaluate(state, jax.random.key(2), masses, frictions, adversary=False,
                             steps=300))
  assert not np.array_equal(calm, grid)
  # The nominal model (pendulum: friction 1.0 on every geom) through friction=None, the
  # path the qarl experiment's nominal evaluations take, gives the grid's (1, 1.0) cell.
  rollout = jax.jit(run.rollout, static_argnames="steps")
  nominal = float(rollout(state, jax.random.key(2), 1.0, None, 0.0, steps=300))
  assert nominal == calm[1, 0]
