"""Two-player Brax environments: a protagonist acts, an adversary pushes the robot.

Robust adversarial RL (Pinto et al., ICML 2017) and Quantal Adversarial RL (Reddi et
al., ICLR 2024) perturb a robot with forces from a second agent. The adversary's action
holds, for each pushed body, a world-frame force along x (forward) and z (up), written
to the MuJoCo state's ``xfrc_applied`` row of that body (force at the body's centre of
mass, no torque) before every control step, so the force acts through all of the
step's physics substeps. The whole ``[nbody, 6]`` array is rewritten each step: MuJoCo
keeps ``xfrc_applied`` between steps, so a body the adversary no longer pushes is
zeroed. The game is zero-sum: the protagonist's reward ``r`` is ``-r`` for the adversary
(:func:`zero_sum_rewards`).

Pushed bodies follow QARL/RARL: ``halfcheetah`` torso and both feet (6 adversary action
dimensions), ``hopper`` foot (2), ``walker2d`` both feet (4) and ``inverted_pendulum``
pole (2). Forces are in the model's units (newtons); ``max_force`` bounds each
component (QARL used 1.0 on dm_control's cheetah, hopper and walker, RARL up to 5.0).
Brax's MuJoCo models are not dm_control's, so the force that matters differs; it is a
parameter.
"""

from __future__ import annotations

import functools
import math
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

ADVERSARY_BODIES = {
    "halfcheetah": ("torso", "bfoot", "ffoot"),
    "hopper": ("foot",),
    "walker2d": ("foot", "foot_left"),
    "inverted_pendulum": ("pole",),
}
ENV_NAMES = tuple(ADVERSARY_BODIES)
# Robustness grids (QARL's evaluation): (body whose mass varies, range of multipliers of
# its mass in the Brax model, range of the tangential friction of every geom). QARL
# sets absolute dm_control torso masses (cheetah 3-9, hopper 1-9, walker 5-15) and the
# same absolute frictions; the dm_control and Brax models differ, so masses here scale
# the Brax model's own.
ROBUSTNESS_GRIDS = {
    "halfcheetah": ("torso", (0.5, 1.5), (0.1, 1.9)),
    "hopper": ("torso", (0.5, 1.5), (0.1, 1.9)),
    "walker2d": ("torso", (0.5, 1.5), (0.1, 1.3)),
    "inverted_pendulum": ("pole", (0.5, 1.5), (0.5, 1.5)),
}


def zero_sum_rewards(reward) -> tuple[Array, Array]:
  """``(protagonist, adversary)`` rewards of the zero-sum game: ``(r, -r)``."""
  r = jnp.asarray(reward)
  return r, -r


class AdversarialEnv:
  """A Brax environment (mjx backend) with an adversary that pushes chosen bodies.

  ``reset(key)`` and ``step(state, action, adversary_action)`` are pure and jit-able;
  states are Brax ``State`` objects whose ``reward`` is the protagonist's.

  Args:
    name: one of :data:`ENV_NAMES`.
    bodies: names of the bodies to push (default :data:`ADVERSARY_BODIES` ``[name]``);
      each must be a body of the model.
    max_force: bound of each force component, ``>= 0`` (model units, newtons). The
      adversary's action lies in ``[-1, 1]`` per dimension (larger values are clipped)
      and is scaled by ``max_force``.
    **env_kwargs: passed to ``brax.envs.get_environment`` (e.g.
      ``terminate_when_unhealthy`` for hopper and walker2d).
  """

  def __init__(self, name: str, bodies: Optional[Sequence[str]] = None,
               max_force: float = 1.0, **env_kwargs):
    if name not in ADVERSARY_BODIES:
      raise ValueError(f"name must be one of {ENV_NAMES}, got {name!r}")
    if isinstance(max_force, bool) or not isinstance(max_force, (int, float)):
      raise TypeError(f"max_force must be a number, got {type(max_force).__name__}")
    if not (math.isfinite(max_force) and max_force >= 0):
      raise ValueError(f"max_force must be a finite number >= 0, got {max_force}")
    from brax import envs  # deferred: importing brax is slow

    self.name = name
    self.env = envs.get_environment(name, backend="mjx", **env_kwargs)
    model = self.env.sys.mj_model
    names = tuple(model.body(i).name for i in range(model.nbody))
    bodies = ADVERSARY_BODIES[name] if bodies is None else tuple(bodies)
    if not bodies:
      raise ValueError("bodies must name at least one body")
    unknown = [b for b in bodies if b not in names]
    if unknown:
      raise ValueError(f"bodies {unknown} are not in the {name} model; its bodies are "
                       f"{names[1:]}")
    self.bodies = bodies
    self.body_ids = tuple(names.index(b) for b in bodies)
    self.num_bodies = model.nbody
    self.max_force = float(max_force)

  @functools.cached_property
  def observation_size(self) -> int:
    # From the shape of a reset, abstractly: Brax's own property runs the reset eagerly,
    # op by op (seconds of small compilations on CPU).
    state = jax.eval_shape(self.env.reset, jax.random.PRNGKey(0))
    return state.obs.shape[-1]

  @property
  def action_size(self) -> int:
    """The protagonist's action dimension (in ``[-1, 1]``)."""
    return self.env.action_size

  @property
  def adversary_action_size(self) -> int:
    """Two force components (x, z) per pushed body."""
    return 2 * len(self.bodies)

  @property
  def dt(self) -> float:
    """Time per control step (model time units)."""
    return float(self.env.dt)

  def forces(self, adversary_action: Array) -> Array:
    """``[adversary_action_size]`` actions -> the ``[nbody, 6]`` ``xfrc_applied``
    array: rows of the pushed bodies hold ``max_force * clip(a, -1, 1)`` as
    ``(f_x, 0, f_z, 0, 0, 0)``, every other row zero."""
    a = jnp.clip(jnp.asarray(adversary_action), -1.0, 1.0) * self.max_force
    if a.shape[-1:] != (self.adversary_action_size,):
      raise ValueError(f"adversary_action must have {self.adversary_action_size} entries "
                       f"(x and z per body of {self.bodies}), got shape {a.shape}")
    pushes = a.reshape(len(self.bodies), 2)
    rows = jnp.zeros((len(self.bodies), 6), a.dtype)
    rows = rows.at[:, 0].set(pushes[:, 0]).at[:, 2].set(pushes[:, 1])
    return jnp.zeros((self.num_bodies, 6), a.dtype).at[jnp.array(self.body_ids)].set(rows)

  def robustness_grid(self, size: int = 11) -> tuple[Array, Array]:
    """``(mass_scales [size], frictions [size])``: the evaluation grid of
    :data:`ROBUSTNESS_GRIDS` for this environment, evenly spaced."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
      raise ValueError(f"size must be an int >= 1, got {size!r}")
    _, (m0, m1), (f0, f1) = ROBUSTNESS_GRIDS[self.name]
    return jnp.linspace(m0, m1, size), jnp.linspace(f0, f1, size)

  def system(self, mass_scale=1.0, friction=None):
    """The model with the mass of :data:`ROBUSTNESS_GRIDS`' body multiplied by
    ``mass_scale`` and, unless ``None``, the tangential friction of every geom set to
    ``friction``. Both may be traced (e.g. vmapped over a grid); pass the result as
    ``system=`` to :meth:`reset` and :meth:`step`. Derived inertia constants are not
    recomputed (as in QARL, which edits dm_control's masses the same way)."""
    for name, value in (("mass_scale", mass_scale), ("friction", friction)):
      if value is not None and not isinstance(value, jax.core.Tracer):
        v = np.asarray(value, np.float64)
        if not np.all(np.isfinite(v)) or np.any(v <= 0 if name == "mass_scale" else v < 0):
          kind = "positive" if name == "mass_scale" else "non-negative"
          raise ValueError(f"{name} must be finite and {kind}, got {value}")
    sys = self.env.sys
    body = self.env.sys.mj_model.body(ROBUSTNESS_GRIDS[self.name][0]).id
    mass = sys.body_mass.at[body].multiply(mass_scale)
    fr = sys.geom_friction
    if friction is not None:
      fr = fr.at[:, 0].set(jnp.asarray(friction, fr.dtype))
    return sys.replace(body_mass=mass, geom_friction=fr)

  def _with_system(self, system, fn, *args):
    if system is None:
      return fn(*args)
    saved = self.env.sys
    self.env.sys = system  # read at trace time by brax's pipeline
    try:
      return fn(*args)
    finally:
      self.env.sys = saved

  def reset(self, key: Array, system=None):
    return self._with_system(system, self.env.reset, key)

  def step(self, state, action: Array, adversary_action: Array, system=None):
    """One control step with the adversary's forces applied throughout it, on
    ``system`` (:meth:`system`) or the default model."""
    ps = state.pipeline_state
    xfrc = self.forces(adversary_action).astype(ps.xfrc_applied.dtype)
    state = state.replace(pipeline_state=ps.replace(xfrc_applied=xfrc))
    return self._with_system(system, self.env.step, state, action)


__all__ = ["ADVERSARY_BODIES", "ENV_NAMES", "ROBUSTNESS_GRIDS", "AdversarialEnv",
           "zero_sum_rewards"]
