"""Reinforcement learning with entropy: Quantal Adversarial RL and Markov coding games.

* :mod:`entropylab.rl.discrete`: continuous actions cut into bins, and the exact
  discretisation of a tanh-Gaussian SAC policy (Markov coding games on Brax);
* :mod:`entropylab.rl.envs`: two-player Brax environments (mjx backend) in which an
  adversary pushes the robot's bodies (Pinto et al., ICML 2017; Reddi et al., ICLR 2024);
* :mod:`entropylab.rl.gridworld`: the noisy 8 x 8 gridworld of MEC-B's Markov coding
  game as a pure JAX environment with Brax's ``reset``/``step`` shape;
* :mod:`entropylab.rl.mcg`: Markov coding games (Sokota et al., ICML 2022) with MEC-B's
  rate limit (Ebrahimi et al., NeurIPS 2024): soft Q-value iteration, the compressed
  coupling of belief and policy, jitted episodes vmapped over messages;
* :mod:`entropylab.rl.qarl`: Quantal Adversarial RL (Reddi et al., ICLR 2024): the
  two-player training iteration with its baselines (RARL, SAC, linear and force
  curricula), ``make_train(config)`` in the PureJaxRL shape;
* :mod:`entropylab.rl.sac`: soft actor-critic (Haarnoja et al. 2018) as pure pieces:
  networks, losses (with a per-sample temperature for the QARL adversary), replay and
  one jit-able update;
* :mod:`entropylab.rl.teacher`: the adversary-temperature curricula of Quantal
  Adversarial RL (Reddi et al., ICLR 2024): the self-paced Gamma teacher and the linear
  schedule.
"""

from entropylab.rl.discrete import (
    DiscreteActions,
    bin_centres,
    bin_edges,
    discretized_tanh_gaussian,
)
from entropylab.rl.envs import (
    ADVERSARY_BODIES,
    ENV_NAMES,
    ROBUSTNESS_GRIDS,
    AdversarialEnv,
    zero_sum_rewards,
)

from entropylab.rl.gridworld import GridWorld
from entropylab.rl.mcg import (
    COMPRESSION,
    Episode,
    coding_game_episode,
    compressed_coupling,
    greedy_coupling_few,
    imec_coding_game_episode,
    play_coding_game,
    play_imec_coding_game,
    soft_q_iteration,
)
from entropylab.rl.qarl import MODES, QARLConfig, make_train
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
    "ADVERSARY_BODIES",
    "AdversarialEnv",
    "COMPRESSION",
    "DiscreteActions",
    "Episode",
    "GridWorld",
    "bin_centres",
    "bin_edges",
    "discretized_tanh_gaussian",
    "coding_game_episode",
    "compressed_coupling",
    "greedy_coupling_few",
    "imec_coding_game_episode",
    "play_coding_game",
    "play_imec_coding_game",
    "soft_q_iteration",
    "ENV_NAMES",
    "GammaTeacherConfig",
    "MODES",
    "QARLConfig",
    "ROBUSTNESS_GRIDS",
    "TeacherState",
    "TeacherUpdate",
    "gamma_kl",
    "gamma_log_density",
    "linear_temperature",
    "make_train",
    "sample_temperatures",
    "teacher_init",
    "teacher_update",
    "zero_sum_rewards",
]
