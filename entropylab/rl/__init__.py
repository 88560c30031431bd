"""Reinforcement learning with entropy: Quantal Adversarial RL and Markov coding games.

* :mod:`entropylab.rl.teacher`: the adversary-temperature curricula of Quantal
  Adversarial RL (Reddi et al., ICLR 2024): the self-paced Gamma teacher and the linear
  schedule.
"""

from entropylab.rl.teacher import (
    GammaTeacherConfig,
    TeacherState,
    TeacherUpdate,
    gamma_kl,
    gamma_log_density,
    linear_temperature,
    sample_temperatures,
    teacher_init,
    teacher_update,
)

__all__ = [
    "GammaTeacherConfig",
    "TeacherState",
    "TeacherUpdate",
    "gamma_kl",
    "gamma_log_density",
    "linear_temperature",
    "sample_temperatures",
    "teacher_init",
    "teacher_update",
]
