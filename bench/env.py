"""Environment throughput: `python -m bench.env --game all --batch 4096`.

For each game (at its default, the paper's setting, or `--preset`) and for a mixed batch of all
of them (equal shares, one jit), measures after compilation, on whatever device JAX uses:
  rules   board-steps/s of `vmap(env.step)` with random legal moves (legal mask included),
          `--steps` moves fused into one jitted `lax.scan`, called as often as a timed run
          of 0.2 s takes (`bench.peers.scan_throughput`);
  render  frames/s of one jitted call that steps the batch and returns its frames
          (uint8[batch, H, W, 3], materialised), called once per move from Python, each
          call donating the previous states and frames;
  ceiling frames/s of a jitted, donated elementwise pass (`frames + 1`) over frames of the
          same shape and batch: what reading and writing every byte once costs on this
          machine. `render / ceiling` is the renderer's efficiency;
and, side by side in the same run: for Swap, the NumPy reference (`bench.numpy_swap`) stepped
and drawn one board at a time in a host loop, the way a gym environment batched by
SyncVectorEnv runs; for 2048, pgx's and jumanji's 2048 timed the same way as `rules` (state
only) when those packages are installed (`pip install -e ".[bench]"`, see `bench.peers`).
Every figure is the best of `--repeats` timed runs after the compiling one; a compile time
is the jitted function's trace, lower and compile (`jit(f).lower(...).compile()`), no run.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw

import jaxgym
import render
from bench import numpy_swap, peers, write_json
from jaxgym import tiles
from jaxgym.multigame import MultiGame

MIX = "mix"


def machine() -> str:
    device = jax.devices()[0]
    cpu = platform.processor() or platform.machine()
    return f"{device.platform}:{device.device_kind} ({os.cpu_count()} CPU cores, {cpu}), jax {jax.__version__}"


def batch_of(games: list[str], batch: int, preset: str | None) -> MultiGame:
    """`batch` boards shared equally among `games` (one game: a plain batch of it)."""
    envs = tuple(jaxgym.make(name, preset=preset) for name in games)
    counts = [batch // len(games)] * len(games)
    counts[0] += batch - sum(counts)
    return MultiGame(envs=envs, counts=tuple(counts))


def bench_rules(mix: MultiGame, steps: int, seed: int, repeats: int = 1) -> dict:
    def move(states, key):
        states = mix.step(states, mix.random_actions(key, states))
        return states, mix.field(states, "reward")

    states = jax.jit(mix.reset)(jax.random.key(seed))
    return peers.scan_throughput(move, states, mix.batch_size, steps, seed, repeats)


def render_timer(mix: MultiGame, steps: int, seed: int) -> tuple[dict, Callable[[], float]]:
    """({compile_s, frame_shape}, a function that times `steps` moves of step + render, one
    jitted call per move, and returns the seconds); compile_s is its trace, lower and compile,
    without a run. Each call donates the previous call's states and frames, as a rollout loop
    that keeps only the newest frames would: the new frames are written into the old ones'
    buffer instead of freshly allocated memory, whose first touch (page faults) costs more
    than drawing on the CPU. The boards play on from one timing to the next."""

    @functools.partial(jax.jit, donate_argnums=(0, 2), keep_unused=True)
    def step_and_draw(states, key, frames):
        del frames  # donated: its buffer holds the new frames
        states = mix.step(states, mix.random_actions(key, states))
        return states, render.mix_frames(mix, states)

    keys = jax.random.split(jax.random.key(seed + 1), steps + 1)
    carry = [jax.jit(mix.reset)(jax.random.key(seed)),
             jnp.zeros((mix.batch_size, *render.canvas_shape(mix.envs), 3), jnp.uint8)]
    start = time.perf_counter()
    step_and_draw = step_and_draw.lower(carry[0], keys[0], carry[1]).compile()
    info = {"compile_s": time.perf_counter() - start, "frame_shape": list(carry[1].shape[1:])}
    carry[:] = jax.block_until_ready(step_and_draw(carry[0], keys[0], carry[1]))  # untimed

    def timed() -> float:
        start = time.perf_counter()
        for key in keys[1:]:
            carry[:] = step_and_draw(carry[0], key, carry[1])
        jax.block_until_ready(carry[1])
        return time.perf_counter() - start

    return info, timed


def ceiling_timer(shape: tuple[int, ...], steps: int) -> Callable[[], float]:
    """A function that times `steps` donated `frames + 1` passes over uint8 frames of `shape`
    (batch first) and returns the seconds: every byte read and written once, the memory-speed
    bound a renderer is measured against."""
    bump = jax.jit(lambda frames: frames + 1, donate_argnums=0)
    frames = [jax.block_until_ready(bump(jnp.zeros(shape, jnp.uint8)))]

    def timed() -> float:
        start = time.perf_counter()
        for _ in range(steps):
            frames[0] = bump(frames[0])
        jax.block_until_ready(frames[0])
        return time.perf_counter() - start

    return timed


def bench_render(mix: MultiGame, steps: int, seed: int, repeats: int = 3) -> dict:
    """Step + render and its ceiling, timed in turn `repeats` times each, so that both see the
    machine in the same state: the ceiling of a shared machine's memory swings far more than
    the renderer does. Each rate is its best run; the efficiency is the median of the paired
    runs' ratios (render frames/s over ceiling frames/s)."""
    info, render_run = render_timer(mix, steps, seed)
    ceiling_run = ceiling_timer((mix.batch_size, *info["frame_shape"]), steps)
    pairs = [(render_run(), ceiling_run()) for _ in range(repeats)]
    frames, ratios = mix.batch_size * steps, [c / r for r, c in pairs]
    return {"render": {"frames_per_s": frames / min(r for r, _ in pairs), **info},
            "ceiling": {"frames_per_s": frames / min(c for _, c in pairs)},
            "render_efficiency": float(np.median(ratios)), "render_efficiency_runs": ratios}


def _draw_numpy_board(board: np.ndarray, env) -> np.ndarray:
    """Draw one board cell by cell with PIL, as a pygame-style env does."""
    px = env.tile_px
    image = Image.new("RGB", (board.shape[1] * px, board.shape[0] * px), (238, 236, 230))
    draw = ImageDraw.Draw(image)
    for r, row in enumerate(board):
        for c, tile in enumerate(row):
            colour, shape = divmod(int(tile), env.shapes)
            box = (c * px + 3, r * px + 3, (c + 1) * px - 4, (r + 1) * px - 4)
            rgb = tiles.palette(env.palette)[colour][1]
            draw.rectangle((c * px, r * px, (c + 1) * px - 1, (r + 1) * px - 1), outline=(150, 150, 150))
            if shape == 0:
                draw.ellipse(box, fill=rgb)
            elif shape == 1:
                draw.rectangle(box, fill=rgb)
            else:
                draw.polygon([((box[0] + box[2]) / 2, box[1]), (box[2], box[3]), (box[0], box[3])], fill=rgb)
    return np.asarray(image)


def bench_numpy_reference(env, boards: int, steps: int, seed: int) -> dict:
    game = numpy_swap.NumpySwap(env.rows, env.cols, env.colours, env.shapes)
    rng = np.random.default_rng(seed)
    states = [game.deal(int(s)) for s in rng.integers(0, 2**32, boards)]
    start = time.perf_counter()
    for _ in range(steps):
        for i, board in enumerate(states):
            legal = np.flatnonzero(numpy_swap.legal_moves(board))
            move = numpy_swap.all_swaps(env.rows, env.cols)[int(rng.choice(legal))]
            states[i], _ = game.step(board, move, int(rng.integers(0, 2**32)))
            _draw_numpy_board(states[i], env)
    seconds = time.perf_counter() - start
    return {"frames_per_s": boards * steps / seconds, "boards": boards}


def bench_game(game: str, args) -> dict:
    """Every measurement for one game (or MIX), printed as it comes."""
    names = sorted(jaxgym.list_games()) if game == MIX else [game]
    mix = batch_of(names, args.batch, args.preset)
    shapes = ", ".join(f"{env.name} {env.board_shape[0]}x{env.board_shape[1]}" for env in mix.envs)
    print(f"{game if game == MIX else ''}{' of ' if game == MIX else ''}{shapes}, batch {args.batch}")
    result: dict = {"boards": dict(zip(mix.labels, mix.counts))}
    result["rules"] = bench_rules(mix, args.steps, args.seed, args.repeats)
    print(f"  rules only (with legal mask): {result['rules']['board_steps_per_s']:>12,.0f} board-steps/s"
          f"   (compile {result['rules']['compile_s']:.1f} s)")
    result.update(bench_render(mix, args.steps, args.seed, args.repeats))
    h, w, _ = result["render"]["frame_shape"]
    print(f"  step + render {h}x{w}:       {result['render']['frames_per_s']:>12,.0f} frames/s"
          f"   (compile {result['render']['compile_s']:.1f} s)")
    print(f"  ceiling, donated frames + 1: {result['ceiling']['frames_per_s']:>12,.0f} frames/s"
          f"   (render efficiency {result['render_efficiency']:.3f})")
    if game == "swap" and args.reference_boards > 0:
        result["numpy_reference"] = bench_numpy_reference(mix.envs[0], args.reference_boards, 2, args.seed)
        print(f"  NumPy + PIL, one board at a time: {result['numpy_reference']['frames_per_s']:>8,.0f} frames/s")
    if game == "2048":
        result.update(peers.run_all(args.batch, args.steps, args.seed, args.repeats))
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.env", description=__doc__.split("\n\n")[0])
    choices = sorted(jaxgym.list_games()) + [MIX, "all"]
    parser.add_argument("--game", default="all", choices=choices,
                        help="one game, 'mix' (all games in one batch) or 'all' (each, then the mix)")
    parser.add_argument("--preset", default=None, help="difficulty preset for every game (default: paper)")
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=20, help="moves timed per measurement")
    parser.add_argument("--reference-boards", type=int, default=32, help="boards for the NumPy Swap loop (0: skip)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed runs per measurement, after the compiling one; the best is reported")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.batch < 1 or args.steps < 1 or args.repeats < 1:
        parser.error("--batch, --steps and --repeats must be >= 1")
    try:
        games = choices[:-1] if args.game == "all" else [args.game]
        for game in games:
            if game != MIX:
                jaxgym.make(game, preset=args.preset)
    except ValueError as error:
        parser.error(str(error))

    print(f"{args.steps} moves per measurement, best of {args.repeats}; {machine()}")
    results = {"batch": args.batch, "preset": args.preset, "steps": args.steps,
               "repeats": args.repeats, "machine": machine()}
    for game in games:
        results[game] = bench_game(game, args)
    return write_json(args.json, results)


if __name__ == "__main__":
    main()
