"""Watch a policy play one board: `python -m jaxgym.play --game swap --policy expert --steps 20
--out swap.gif`. Prints each move and the score, and writes an animation (GIF, or MP4 with the
`video` extra) in which every frame outlines the cells about to move and says what happened.

Policies: `expert` (the game's `expert_action`), `random` (uniform over legal moves).
"""

from __future__ import annotations

import argparse
import sys

import jax
import numpy as np
from tqdm import tqdm

import jaxgym
import render
from jaxgym import text


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m jaxgym.play", description=__doc__.split("\n\n")[0])
    parser.add_argument("--game", default="swap", choices=sorted(jaxgym.list_games()))
    parser.add_argument("--preset", default=None, help="named difficulty preset (see jaxgym.list_games())")
    parser.add_argument("--policy", default="expert", choices=["expert", "random"])
    parser.add_argument("--steps", type=int, default=20, help="moves to play (>= 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tile-px", type=int, default=None, help="pixels per cell in the animation")
    parser.add_argument("--fps", type=float, default=1.5, help="frames per second of the animation")
    parser.add_argument("--out", default=None,
                        help="animation file (.gif or .mp4), or .png for a picture of the board after the moves; "
                             "none: no file")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    if args.fps <= 0:
        parser.error("--fps must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    knobs = {} if args.tile_px is None else {"tile_px": args.tile_px}
    try:
        env = jaxgym.make(args.game, preset=args.preset, **knobs)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    def choose(state, key):
        if args.policy == "expert":
            return env.expert_action(state)
        return jaxgym.random_legal_action(key, state.legal_action_mask)

    @jax.jit
    def play_one(state, key):
        action = choose(state, key)
        return action, env.step(state, action), render.frame(env, state)

    key, reset_key = jax.random.split(jax.random.key(args.seed))
    state = jax.jit(env.reset)(reset_key)
    pictures, score = [], 0.0
    for step in tqdm(range(1, args.steps + 1), desc=f"{args.game} ({args.policy})", unit="move"):
        key, policy_key = jax.random.split(key)
        action, next_state, picture = play_one(state, policy_key)
        reward = float(next_state.reward)
        score += reward
        move = text.answer_text(env, action)
        tqdm.write(f"move {step:3d}: {move}  reward {reward:+g}  score {score:g}")
        boxes = []
        if isinstance(env, jaxgym.PairEnv):  # outline the two cells
            r1, c1, r2, c2 = (int(x) for x in env.decode_action(action))
            boxes = [render.cell_box(env, r1, c1), render.cell_box(env, r2, c2)] if r1 >= 0 else []
        pictures.append(render.annotate(picture, [f"move {step}: {move}", f"reward {reward:+g}   score {score:g}"], boxes))
        state = next_state
        if bool(state.done):
            tqdm.write("episode over")
            break
    final = render.annotate(render.frame(env, state), ["final board", f"score {score:g}"])
    pictures.append(final)
    print(f"{args.game}: {len(pictures) - 1} moves by the {args.policy} policy, score {score:g}")
    if args.out and args.out.lower().endswith(".png"):
        render.save_png(args.out, np.asarray(render.frame(env, state)))
        print(f"wrote {args.out}")
    elif args.out:
        render.save_animation(args.out, [np.asarray(p) for p in pictures], fps=args.fps)
        print(f"wrote {args.out} ({len(pictures)} frames)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
