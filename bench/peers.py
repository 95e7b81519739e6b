"""2048 in other JAX libraries, timed like our own rules benchmark: `python -m bench.peers`.

For pgx's `pgx.make("2048")` and jumanji's `jumanji.make("Game2048-v1")`, this measures exactly
what `bench.env.bench_rules` measures for our games: board-steps/s of `vmap(env.step)` with a
uniformly random legal move per board, drawn from the library's own legal-action mask (pgx:
`state.legal_action_mask`; jumanji: `timestep.observation.action_mask`) with
`jaxgym.random_legal_action`, and `steps` moves fused into one jitted `lax.scan`. State only, no
rendering; the first (compiling) call is timed apart, and the best of `--repeats` timed runs
(each of as many calls as last `MIN_SECONDS`, 0.2 s) is the number reported. Whatever each library's step computes besides the board (pgx's one-hot observation,
jumanji's `TimeStep`) is part of its step and so part of the time.

Finished games are neither reset nor dropped: every board keeps being stepped, as in
`bench_rules`. A pgx board that has terminated comes back unchanged with zero reward (pgx makes
every action legal there); a jumanji board with no legal move takes action 0, which leaves it
unchanged with zero reward. From fresh boards a 2048 game cannot end within about 14 moves, so
at the default 20 moves this hardly ever matters.

These libraries are optional and not needed by jaxgym: `pip install -e ".[bench]"`. Each
function returns None when its library cannot be imported.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import math
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp

import jaxgym
from bench import write_json


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _pick(keys: jax.Array, masks: jax.Array) -> jax.Array:
    """int32[batch]: a uniformly random legal action per board; 0 where none is legal."""
    actions = jax.vmap(jaxgym.random_legal_action)(keys, masks)
    return jnp.where(masks.any(axis=-1), actions, 0).astype(jnp.int32)


MIN_SECONDS = 0.2
"""A timed run lasts at least this long (a run of a few milliseconds is mostly noise)."""


def scan_throughput(move: Callable, carry: Any, batch: int, steps: int, seed: int,
                    repeats: int = 1) -> dict:
    """Board-steps/s of `steps` calls of `move(carry, key) -> (carry, rewards)` fused into one
    jitted `lax.scan`: its compilation (trace, lower, compile; no run) is timed apart, a first
    call sets how many calls a timed run makes (enough for `MIN_SECONDS`), then the best of
    `repeats` timed runs is reported. Every call starts from the same boards, with its own key.
    The measurement every rules benchmark here shares (ours in `bench.env`, and the peers)."""

    def scanned(carry, key):
        return jax.lax.scan(move, carry, jax.random.split(key, steps))

    start = time.perf_counter()
    rollout = jax.jit(scanned).lower(carry, jax.random.key(seed + 1)).compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    jax.block_until_ready(rollout(carry, jax.random.key(seed + 1)))
    calls = max(1, math.ceil(MIN_SECONDS / (time.perf_counter() - start)))
    best = float("inf")
    for repeat in range(repeats):
        keys = jax.random.split(jax.random.key(seed + 2 + repeat), calls)
        start = time.perf_counter()
        for key in keys:
            _, rewards = rollout(carry, key)
        jax.block_until_ready(rewards)
        best = min(best, time.perf_counter() - start)
    return {
        "board_steps_per_s": batch * steps * calls / best,
        "compile_s": compile_s,
        "calls": calls,
        "mean_reward": float(jnp.mean(rewards)),
    }


def pgx_2048(batch: int, steps: int, seed: int, repeats: int = 1) -> dict | None:
    """pgx's 2048 (`pgx.make("2048")`, pgx 2.x API); None if pgx is not importable."""
    try:
        import pgx
    except Exception:  # not installed, or broken on this jax
        return None
    env = pgx.make("2048")

    def move(states, key):
        pick_key, step_key = jax.random.split(key)
        actions = _pick(jax.random.split(pick_key, batch), states.legal_action_mask)
        states = jax.vmap(env.step)(states, actions, jax.random.split(step_key, batch))
        return states, states.rewards[:, 0]

    states = jax.jit(jax.vmap(env.init))(jax.random.split(jax.random.key(seed), batch))
    return {**scan_throughput(move, states, batch, steps, seed, repeats), "version": _version("pgx")}


def jumanji_2048(batch: int, steps: int, seed: int, repeats: int = 1) -> dict | None:
    """jumanji's 2048 (`jumanji.make("Game2048-v1")`); None if jumanji is not importable."""
    try:
        import jumanji
    except Exception:  # not installed, or broken on this jax
        return None
    env = jumanji.make("Game2048-v1")

    def move(carry, key):
        states, timesteps = carry
        actions = _pick(jax.random.split(key, batch), timesteps.observation.action_mask)
        states, timesteps = jax.vmap(env.step)(states, actions)
        return (states, timesteps), timesteps.reward

    carry = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(seed), batch))
    return {**scan_throughput(move, carry, batch, steps, seed, repeats), "version": _version("jumanji")}


PEERS = {"pgx": pgx_2048, "jumanji": jumanji_2048}


def run_all(batch: int, steps: int, seed: int, repeats: int = 1) -> dict[str, dict | None]:
    """Every peer's figures (None: not installed), each printed as it comes."""
    results = {}
    for name, bench in PEERS.items():
        result = results[name] = bench(batch, steps, seed, repeats)
        if result is None:
            print(f"  {name} 2048: not installed (pip install -e '.[bench]')")
        else:
            print(f"  {name} {result['version']} 2048, state only: {result['board_steps_per_s']:>12,.0f} "
                  f"board-steps/s   (compile {result['compile_s']:.1f} s)")
    return results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=20, help="moves timed per measurement")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement; the best is reported")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.batch < 1 or args.steps < 1 or args.repeats < 1:
        parser.error("--batch, --steps and --repeats must be >= 1")

    device = jax.devices()[0]
    print(f"2048, batch {args.batch}, {args.steps} moves; {device.platform}:{device.device_kind}, jax {jax.__version__}")
    results: dict = {"batch": args.batch, "steps": args.steps, "jax": jax.__version__}
    results.update(run_all(args.batch, args.steps, args.seed, args.repeats))
    return write_json(args.json, results)


if __name__ == "__main__":
    main()
