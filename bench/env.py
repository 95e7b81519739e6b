"""Environment throughput: `python -m bench.env --game swap --batch 4096`.

Measures, after compilation and on whatever device JAX uses:
  rules   board-steps/s of `vmap(env.step)` with random legal moves (legal mask included),
          `--steps` moves fused into one jitted `lax.scan`;
  render  frames/s of one jitted call that steps the batch and returns its frames
          (uint8[batch, H, W, 3], materialised), called once per move from Python;
and, side by side, the NumPy reference (`bench.numpy_swap`) stepped and drawn one board at a
time in a host loop, the way a gym environment batched by SyncVectorEnv runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import jax
import numpy as np
from PIL import Image, ImageDraw

import jaxgym
import render
from bench import numpy_swap
from jaxgym import tiles


def machine() -> str:
    device = jax.devices()[0]
    cpu = platform.processor() or platform.machine()
    return f"{device.platform}:{device.device_kind} ({os.cpu_count()} CPU cores, {cpu}), jax {jax.__version__}"


def bench_rules(env, batch: int, steps: int, seed: int) -> dict:
    def move(states, key):
        keys = jax.random.split(key, batch)
        actions = jax.vmap(jaxgym.random_legal_action)(keys, states.legal_action_mask)
        states = jax.vmap(env.step)(states, actions)
        return states, states.reward

    @jax.jit
    def rollout(states, key):
        return jax.lax.scan(move, states, jax.random.split(key, steps))

    states = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(seed), batch))
    start = time.perf_counter()
    jax.block_until_ready(rollout(states, jax.random.key(seed + 1)))
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    states, rewards = jax.block_until_ready(rollout(states, jax.random.key(seed + 2)))
    seconds = time.perf_counter() - start
    return {
        "board_steps_per_s": batch * steps / seconds,
        "compile_s": compile_s,
        "mean_reward": float(np.mean(rewards)),
    }


def bench_render(env, batch: int, steps: int, seed: int) -> dict:
    @jax.jit
    def step_and_draw(states, key):
        keys = jax.random.split(key, batch)
        actions = jax.vmap(jaxgym.random_legal_action)(keys, states.legal_action_mask)
        states = jax.vmap(env.step)(states, actions)
        return states, render.frames(env, states)

    states = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(seed), batch))
    keys = jax.random.split(jax.random.key(seed + 1), steps + 1)
    states, frames = jax.block_until_ready(step_and_draw(states, keys[0]))
    start = time.perf_counter()
    for key in keys[1:]:
        states, frames = step_and_draw(states, key)
    jax.block_until_ready(frames)
    seconds = time.perf_counter() - start
    return {"frames_per_s": batch * steps / seconds, "frame_shape": list(frames.shape[1:])}


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


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.env", description=__doc__.split("\n\n")[0])
    parser.add_argument("--game", default="swap", choices=sorted(jaxgym.list_games()))
    parser.add_argument("--preset", default=None)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=20, help="moves timed per measurement")
    parser.add_argument("--reference-boards", type=int, default=32, help="boards for the NumPy loop (0: skip)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.batch < 1 or args.steps < 1:
        parser.error("--batch and --steps must be >= 1")

    env = jaxgym.make(args.game, preset=args.preset)
    rows, cols = env.board_shape
    print(f"{args.game} {rows}x{cols}, batch {args.batch}, {args.steps} moves; {machine()}")
    results = {"game": args.game, "preset": args.preset, "batch": args.batch, "machine": machine()}
    results["rules"] = bench_rules(env, args.batch, args.steps, args.seed)
    print(f"  rules only (with legal mask): {results['rules']['board_steps_per_s']:>12,.0f} board-steps/s"
          f"   (compile {results['rules']['compile_s']:.1f} s)")
    results["render"] = bench_render(env, args.batch, args.steps, args.seed)
    h, w, _ = results["render"]["frame_shape"]
    print(f"  step + render {h}x{w}:       {results['render']['frames_per_s']:>12,.0f} frames/s")
    if args.game == "swap" and args.reference_boards > 0:
        results["numpy_reference"] = bench_numpy_reference(env, args.reference_boards, 2, args.seed)
        print(f"  NumPy + PIL, one board at a time: {results['numpy_reference']['frames_per_s']:>8,.0f} frames/s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
