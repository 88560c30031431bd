"""Speed of entropylab.production: active-matter simulation, score training, and the cost
of reaching a 5% entropy-production error against NEEP on the same data.

Cases, all in one process on one device:

(a) Simulation of the motility-induced phase separation system (Boffi & Vanden-Eijnden,
    PNAS 2024: v0 = 0.025, gamma = 1e-4, packing fraction 0.5, eps = 0, dt = 0.1) at
    N = 256 and 1024 particles in 2-D, ``STEPS`` steps from a random configuration:
    ours (``simulate_aoup``, cell-list neighbour lists rebuilt when a particle has moved
    half the skin) against the all-pairs O(N^2) force of the reference implementation
    (nmboffi/active_pflows sums the repulsion over every pair), written here as the same
    jitted Euler-Maruyama loop with ``pair_forces_dense``. Reported as particle-steps per
    second and as the peer's time over ours; the final states must agree to 1e-3 (the
    neighbour list drops pairs beyond the cutoff, each below exp(-12) / beta).
    Also at the largest N: ``CHAINS`` independent chains in one compiled loop
    (``simulate_aoup(..., one_loop=True)`` with ``state0 [C, 2, N, d]``) against the
    same chains run one after another (separate calls); each chain's final state must
    equal its lone run to 1e-3 (bit for bit unless XLA orders the batched force sums
    differently). Which is faster decides ``one_loop``'s default on the platform.
(b) Score-training throughput at the same sizes: optimizer steps per second of an MLP
    score (two hidden layers of 128) on ``[2, N, 2]`` states with the antithetic
    denoising loss, batch 32, Adam.
(c) Training cost to reach 5% error in the entropy production rate of the two-bead
    chain (exact 2.025) from the same 2e5 exact stationary transitions 0.02 apart
    (``sample_ou_pairs``): the score (implicit score matching, MLP 64-64) uses the
    states, NEEP (MLP 64-64 on the pair) the transitions, both with Adam at 1e-3 and
    batches of 1024. Every 50 steps both estimates are evaluated on 2e5 held-out
    transitions (NEEP's own sampling error there is about 1.6%, the score's under
    0.5%), at most 20000 steps (4000 with --quick); the cost is the optimizer steps and
    the training time (evaluation excluded) until the estimate first stays within 5%
    for three evaluations in a row. NEEP at this interval targets the pair entropy
    per unit time (1.98, 2.2% below the rate), which is inside the 5% band.

The Markdown table is printed and written to
``benchmarks/results/bench_production_<platform>[_<device kind>].md`` (or ``--out DIR``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import functools
import math
import os
import platform as _platform
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks.bench_info import _block, _host_cpu, command_line, finish, time_call
from entropylab import production as prod
from entropylab.models import MLP
from entropylab.production import active

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SIZES = (256, 1024)
STEPS = 200
QUICK_STEPS = 50
CHAINS = 4
MIPS = dict(v0=0.025, gamma=1e-4, epsilon=0.0)
PACKING = 0.5
DT = 0.1
AGREE = 1e-3
TARGET_ERROR = 0.05
EVAL_EVERY = 50
MAX_STEPS = 20000
QUICK_MAX_STEPS = 4000
TRAIN_PAIRS = 200_000
HELD_OUT = 200_000


# --------------------------------------------------------------------------- (a) simulation


@functools.partial(jax.jit, static_argnames=("params", "n_steps"))
def all_pairs_simulation(key, state0, params, n_steps):
  """The peer: the same update as ``simulate_aoup`` with the O(N^2) all-pairs force."""
  decay = math.exp(-params.gamma * DT)
  g_noise = math.sqrt(1.0 - decay * decay)
  x_noise = math.sqrt(2.0 * params.epsilon * DT)

  def step(state, t):
    x, g = state[0], state[1]
    xi = jax.random.normal(jax.random.fold_in(key, t), state.shape, state.dtype)
    drift = params.v0 * g + params.k * active.pair_forces_dense(x, params) - params.trap * x
    x_new = active.wrap_positions(x + drift * DT + x_noise * xi[0], params.half_width)
    return jnp.stack([x_new, decay * g + g_noise * xi[1]]), None

  return jax.lax.scan(step, state0, jnp.arange(n_steps))[0]


def mips_params(n: int) -> active.AOUPParams:
  return active.AOUPParams(**MIPS, half_width=active.box_half_width(n, PACKING))


def simulation_rows(steps: int, timing: dict) -> tuple[list[dict], list[str]]:
  rows, bad = [], []
  for n in SIZES:
    p = mips_params(n)
    s0 = active.random_configuration(jax.random.key(n), n, p)
    key = jax.random.key(1)
    ours = lambda s: active.simulate_aoup(key, s, p, DT, steps, save_every=steps).states[-1]
    rebuilds = int(active.simulate_aoup(key, s0, p, DT, steps, save_every=steps).rebuilds)
    peer = lambda s: all_pairs_simulation(key, s, p, steps)
    t_ours, out = time_call(ours, s0, **timing)
    t_peer, ref = time_call(peer, s0, **timing)
    diff = float(jnp.max(jnp.abs(active.minimum_image(out - ref, p.half_width))))
    if not diff <= AGREE:
      bad.append(f"simulation N={n}: final states differ by {diff:.1e}")
    rows.append(dict(n=n, ours=t_ours, peer=t_peer, steps=steps, diff=diff, rebuilds=rebuilds))
    print(f"  simulate N={n}: ours {t_ours * 1e3:.1f} ms, all pairs {t_peer * 1e3:.1f} ms",
          flush=True)
  return rows, bad


def chain_row(steps: int, timing: dict) -> tuple[dict, list[str]]:
  n = SIZES[-1]
  p = mips_params(n)
  s0 = jnp.stack([active.random_configuration(jax.random.key(c), n, p) for c in range(CHAINS)])
  keys = jax.random.split(jax.random.key(2), CHAINS)
  together = lambda s: active.simulate_aoup(keys, s, p, DT, steps, save_every=steps,
                                            one_loop=True).states[:, -1]
  apart = lambda s: jnp.stack([
      active.simulate_aoup(keys[c], s[c], p, DT, steps, save_every=steps).states[-1]
      for c in range(CHAINS)])
  t_together, out = time_call(together, s0, **timing)
  t_apart, ref = time_call(apart, s0, **timing)
  diff = float(jnp.max(jnp.abs(active.minimum_image(out - ref, p.half_width))))
  bad = [] if diff <= AGREE else [
      f"{CHAINS} chains in one loop differ from their lone runs by {diff:.1e}"]
  print(f"  {CHAINS} chains N={n}: one loop {t_together * 1e3:.1f} ms, one after another "
        f"{t_apart * 1e3:.1f} ms", flush=True)
  return dict(n=n, steps=steps, together=t_together, apart=t_apart, diff=diff), bad


# --------------------------------------------------------------------------- (b) training


def training_rows(timing: dict) -> list[dict]:
  rows = []
  for n in SIZES:
    p = mips_params(n)
    model = MLP(features=(128, 128), state_ndim=3)
    states = jax.vmap(lambda k: active.random_configuration(k, n, p))(
        jax.random.split(jax.random.key(2), 32))
    params = model.init(jax.random.key(0), states[0])
    opt = optax.adam(1e-3)
    opt_state = opt.init(params)

    @jax.jit
    def train_step(params, opt_state, key):
      loss = lambda q: prod.denoising_score_matching_loss(lambda z: model.apply(q, z), states,
                                                          key, 0.05)
      value, grads = jax.value_and_grad(loss)(params)
      updates, opt_state = opt.update(grads, opt_state)
      return optax.apply_updates(params, updates), opt_state, value

    t, _ = time_call(train_step, params, opt_state, jax.random.key(3), **timing)
    rows.append(dict(n=n, step=t))
    print(f"  train N={n}: {t * 1e3:.2f} ms per step", flush=True)
  return rows


# --------------------------------------------------------------------------- (c) cost to 5%


def _train_until(loss_fn, estimate_fn, params, batch_fn, exact: float, max_steps: int):
  """Adam steps until the estimate stays within TARGET_ERROR for 3 evaluations."""
  opt = optax.adam(1e-3)
  opt_state = opt.init(params)

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def chunk(params, opt_state, start):
    def body(carry, t):
      params, opt_state = carry
      grads = jax.grad(loss_fn)(params, batch_fn(jax.random.fold_in(jax.random.key(7), t)))
      updates, opt_state = opt.update(grads, opt_state)
      return (optax.apply_updates(params, updates), opt_state), None
    return jax.lax.scan(body, (params, opt_state), start + jnp.arange(EVAL_EVERY))[0]

  estimate = jax.jit(estimate_fn)
  chunk(jax.tree.map(jnp.copy, params), opt.init(params), 0)  # compile, untimed
  estimate(params)
  trained, streak, steps, errors = 0.0, 0, 0, []
  while steps < max_steps:
    t0 = time.perf_counter()
    params, opt_state = _block(chunk(params, opt_state, steps))
    trained += time.perf_counter() - t0
    steps += EVAL_EVERY
    err = abs(float(estimate(params)) - exact) / exact
    errors.append(err)
    streak = streak + 1 if err <= TARGET_ERROR else 0
    if streak == 3:
      return dict(steps=steps - 2 * EVAL_EVERY, seconds=trained, reached=True, error=err)
  return dict(steps=steps, seconds=trained, reached=False, error=errors[-1])


def cost_rows(max_steps: int) -> list[dict]:
  m, d = prod.bead_spring_chain([1.0, 10.0])
  tau = 0.02
  with jax.enable_x64(True):
    exact = float(prod.ou_entropy_production(m, d))
  x, y = prod.sample_ou_pairs(jax.random.key(5), m, d, tau, TRAIN_PAIRS + HELD_OUT)
  x, y = x.astype(jnp.float32), y.astype(jnp.float32)
  tx, ty = x[:TRAIN_PAIRS], y[:TRAIN_PAIRS]
  vx, vy = x[TRAIN_PAIRS:], y[TRAIN_PAIRS:]
  m32, diag = jnp.asarray(m, jnp.float32), jnp.diagonal(d).astype(jnp.float32)
  drift = lambda z: m32 @ z

  score_model = MLP(features=(64, 64))
  score_params = score_model.init(jax.random.key(0), tx[0])
  pick = lambda k: jax.random.randint(k, (1024,), 0, tx.shape[0])
  score = _train_until(
      lambda p, xb: prod.implicit_score_matching_loss(lambda z: score_model.apply(p, z), xb),
      lambda p: prod.entropy_production_rate(drift, lambda z: score_model.apply(p, z), diag,
                                             vx),
      score_params, lambda k: tx[pick(k)], exact, max_steps)

  neep_model = MLP(features=(64, 64), out_features=1, squeeze=True)
  neep_params = neep_model.init(jax.random.key(0), jnp.zeros(4))
  h_of = lambda p: (lambda a, b: neep_model.apply(p, jnp.concatenate([a, b])))
  neep = _train_until(
      lambda p, batch: -prod.neep_objective(h_of(p), *batch),
      lambda p: prod.neep_entropy_production(h_of(p), vx, vy, tau),
      neep_params, lambda k: (tx[pick(k)], ty[pick(k)]), exact, max_steps)
  print(f"  5% cost: score {score['steps']} steps {score['seconds']:.2f} s, "
        f"NEEP {neep['steps']} steps {neep['seconds']:.2f} s", flush=True)
  return [dict(method="score (implicit score matching)", cap=max_steps, **score),
          dict(method="NEEP", cap=max_steps, **neep)]


# --------------------------------------------------------------------------- report


def parse_args(argv):
  parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_production",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true",
                      help=f"{QUICK_STEPS} simulation steps, short timing")
  parser.add_argument("--out", type=Path, default=RESULTS_DIR,
                      help="folder for the Markdown table (default benchmarks/results)")
  args, _ = parser.parse_known_args(argv)
  return args


def to_markdown(sim, chains, train, cost, device, quick: bool) -> str:
  now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
  lines = [
      f"# bench_production on {device.device_kind}{' (quick)' if quick else ''}",
      "",
      f"- device: `{device.device_kind}` (platform `{device.platform}`); host: "
      f"{_host_cpu()}, {os.cpu_count()} logical CPUs",
      f"- versions: jax {jax.__version__}, numpy {np.__version__}, Python "
      f"{_platform.python_version()}",
      f"- date: {now}",
      f"- command: `{command_line()}`",
      "",
      "| simulation (MIPS, 2-D, float32) | N | steps | ours ms | particle-steps / s | "
      "all-pairs peer ms | peer / ours | max state diff | list builds |",
      "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
  ]
  for r in sim:
    lines.append(f"| `simulate_aoup` vs all-pairs forces | {r['n']} | {r['steps']} | "
                 f"{r['ours'] * 1e3:.1f} | {r['n'] * r['steps'] / r['ours']:.3g} | "
                 f"{r['peer'] * 1e3:.1f} | {r['peer'] / r['ours']:.2f} | {r['diff']:.1e} | "
                 f"{r['rebuilds']} |")
  lines += ["", f"| {CHAINS} chains (MIPS, float32) | N | steps | one loop ms | one after another "
            "ms | one after another / one loop | max state diff |", "|---|---:|---:|---:|---:|---:|---:|",
            f"| `simulate_aoup` with `state0 [{CHAINS}, 2, N, 2]` | {chains['n']} | "
            f"{chains['steps']} | {chains['together'] * 1e3:.1f} | {chains['apart'] * 1e3:.1f} | "
            f"{chains['apart'] / chains['together']:.2f} | "
            f"{chains['diff']:.1e} |"]
  lines += ["", "| score training (DSM, MLP 128-128, batch 32) | N | ms per step | steps / s |",
            "|---|---:|---:|---:|"]
  for r in train:
    lines.append(f"| `denoising_score_matching_loss` + Adam | {r['n']} | {r['step'] * 1e3:.2f} | "
                 f"{1 / r['step']:.1f} |")
  lines += ["", "| two-bead chain, 5% EPR error | optimizer steps | training s | reached | "
            "error at stop |", "|---|---:|---:|---|---:|"]
  for r in cost:
    reached = "yes" if r["reached"] else f"no (cap {r['cap']})"
    lines.append(f"| {r['method']} | {r['steps']} | {r['seconds']:.2f} | {reached} | "
                 f"{100 * r['error']:.1f}% |")
  score, neep = cost
  ratio = neep["seconds"] / score["seconds"] if score["seconds"] > 0 else float("nan")
  lines += ["",
            f"- NEEP / score training time to 5%: {ratio:.2f}x "
            f"({neep['steps']} vs {score['steps']} steps)"
            + ("" if score["reached"] and neep["reached"] else
               "; a method that did not reach 5% within the cap is timed to the cap"),
            f"- simulation: the cell list is {sim[-1]['peer'] / sim[-1]['ours']:.1f}x faster "
            f"than all pairs at N = {sim[-1]['n']}"]
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  args = parse_args(argv)
  device = jax.devices()[0]
  timing = dict(min_samples=3, budget_s=0.5) if args.quick else dict(min_samples=5,
                                                                     budget_s=2.0)
  sim, bad = simulation_rows(QUICK_STEPS if args.quick else STEPS, timing)
  chains, bad_chains = chain_row(QUICK_STEPS if args.quick else STEPS, timing)
  bad += bad_chains
  train = training_rows(timing)
  cost = cost_rows(QUICK_MAX_STEPS if args.quick else MAX_STEPS)
  return finish(args.out, "bench_production", device,
                to_markdown(sim, chains, train, cost, device, args.quick), bad,
                "simulation disagrees with its references")


if __name__ == "__main__":
  sys.exit(main())
