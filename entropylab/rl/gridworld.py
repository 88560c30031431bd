"""A noisy gridworld as a pure JAX environment with Brax's ``reset``/``step`` shape.

The Markov coding game of MEC-B (Ebrahimi, Chen & Khisti, NeurIPS 2024, Section 5;
the layout of their ``gridworld.py``): an 8 x 8 grid, cells ``(row, col)`` with row 0 at
the top; the goal at (0, 7) pays +1 and the trap at (1, 7) pays -1, both terminal; the
diagonal (1, 1), (2, 2), ..., (7, 7) is blocked, so from the start (5, 4) the only way to
the goal is around the corner (0, 0). Actions 0 = up, 1 = right, 2 = down, 3 = left.
An action moves as intended with probability ``1 - 2 * slip`` and to each perpendicular
side with probability ``slip`` (0.1: 0.8 / 0.1 / 0.1); a move off the grid or into an
obstacle leaves the agent in place. Every other step pays 0.

:meth:`GridWorld.tables` gives the tabular model (``P[s, a, s']``, expected reward
``r[s, a]``, terminal flags) for :func:`entropylab.rl.mcg.soft_q_iteration`; ``reset``
and ``step`` sample from it (the state carries its own PRNG key, as Brax states carry
their ``info``), so the coding-game code runs the same on this and on Brax
environments.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1))  # up, right, down, left
MECB_OBSTACLES = tuple((i, i) for i in range(1, 8))


class GridState(NamedTuple):
  """Brax-shaped state: ``obs`` is the one-hot cell ``[S]``; ``cell`` its index."""

  cell: Array
  obs: Array
  reward: Array
  done: Array
  key: Array


class GridWorld:
  """The noisy gridworld (module docstring). Cell index ``s = row * size + col``.

  Args:
    size: side of the square grid.
    start, goal, trap: ``(row, col)`` cells.
    obstacles: blocked cells.
    slip: probability of each perpendicular move, in ``[0, 0.5]``.
    goal_reward, trap_reward: rewards for entering the goal and the trap.
  """

  num_actions = 4

  def __init__(self, size: int = 8, start: Sequence[int] = (5, 4),
               goal: Sequence[int] = (0, 7), trap: Sequence[int] = (1, 7),
               obstacles: Sequence[Sequence[int]] = MECB_OBSTACLES, slip: float = 0.1,
               goal_reward: float = 1.0, trap_reward: float = -1.0):
    if isinstance(size, bool) or not isinstance(size, int) or size < 2:
      raise ValueError(f"size must be an int >= 2, got {size!r}")
    cells = {}
    for name, cell in (("start", start), ("goal", goal), ("trap", trap)):
      cells[name] = self._check_cell(cell, size, name)
    blocked = {self._check_cell(c, size, "obstacles") for c in obstacles}
    if len(set(cells.values())) != 3:
      raise ValueError(f"start, goal and trap must be different cells, got {cells}")
    for name, cell in cells.items():
      if cell in blocked:
        raise ValueError(f"{name} {cell} is an obstacle")
    if not (0.0 <= float(slip) <= 0.5):
      raise ValueError(f"slip must be in [0, 0.5], got {slip}")
    self.size, self.slip = size, float(slip)
    self.start, self.goal, self.trap = cells["start"], cells["goal"], cells["trap"]
    self.obstacles = tuple(sorted(blocked))
    self.goal_reward, self.trap_reward = float(goal_reward), float(trap_reward)
    p, r, term = self._build()
    self._p, self._r, self._term = p, r, term
    self._state_reward = np.zeros(size * size)
    self._state_reward[self.index(self.goal)] = self.goal_reward
    self._state_reward[self.index(self.trap)] = self.trap_reward

  @staticmethod
  def _check_cell(cell, size, name):
    try:
      r, c = (int(v) for v in cell)
    except (TypeError, ValueError):
      raise ValueError(f"{name} must be (row, col) pairs, got {cell!r}") from None
    if not (0 <= r < size and 0 <= c < size):
      raise ValueError(f"{name} {cell} lies outside the {size} x {size} grid")
    return (r, c)

  @property
  def num_states(self) -> int:
    return self.size * self.size

  def index(self, cell) -> int:
    return cell[0] * self.size + cell[1]

  def _build(self):
    n, s_count = self.size, self.size * self.size
    blocked = set(self.obstacles)
    terminal = np.zeros(s_count, bool)
    terminal[self.index(self.goal)] = terminal[self.index(self.trap)] = True
    p = np.zeros((s_count, 4, s_count))
    for r in range(n):
      for c in range(n):
        s = self.index((r, c))
        for a in range(4):
          if terminal[s] or (r, c) in blocked:
            p[s, a, s] = 1.0  # absorbing (never left: episodes end on entering)
            continue
          for move, prob in ((a, 1 - 2 * self.slip), ((a + 1) % 4, self.slip),
                             ((a + 3) % 4, self.slip)):
            dr, dc = MOVES[move]
            rr, cc = r + dr, c + dc
            if not (0 <= rr < n and 0 <= cc < n) or (rr, cc) in blocked:
              rr, cc = r, c
            p[s, a, self.index((rr, cc))] += prob
    reward_of = np.zeros(s_count)
    reward_of[self.index(self.goal)] = self.goal_reward
    reward_of[self.index(self.trap)] = self.trap_reward
    r_sa = np.where(terminal[:, None], 0.0, p @ reward_of)
    return p, r_sa, terminal

  def tables(self, dtype=jnp.float32) -> tuple[Array, Array, Array]:
    """``(P [S, 4, S], r [S, 4], terminal [S])``: transition probabilities, expected
    reward for the step, and the terminal cells (goal and trap)."""
    return (jnp.asarray(self._p, dtype), jnp.asarray(self._r, dtype),
            jnp.asarray(self._term))

  def _state(self, cell, reward, done, key) -> GridState:
    return GridState(cell, jax.nn.one_hot(cell, self.num_states), reward, done, key)

  def reset(self, key: Array) -> GridState:
    """The start cell; ``key`` seeds the slips of the episode."""
    cell = jnp.asarray(self.index(self.start), jnp.int32)
    return self._state(cell, jnp.zeros(()), jnp.zeros(()), key)

  def step(self, state: GridState, action) -> GridState:
    """One move from ``state.cell`` with ``action`` in ``0..3``; ``reward`` is that of
    the cell entered, ``done`` is 1.0 on entering the goal or the trap."""
    key, k = jax.random.split(state.key)
    probs = jnp.asarray(self._p, jnp.float32)[state.cell, action]
    cell = jax.random.categorical(k, jnp.log(probs)).astype(jnp.int32)
    reward = jnp.asarray(self._state_reward, jnp.float32)[cell]
    done = jnp.asarray(self._term, jnp.float32)[cell]
    return self._state(cell, reward, done, key)


__all__ = ["GridState", "GridWorld", "MECB_OBSTACLES", "MOVES"]
