"""Play held-out boards with a policy and report what it sees and does.

    python -m policy.evaluate --game swap --checkpoint runs/sft-swap --boards 256 --steps 1
    python -m policy.evaluate --game swap --policy expert --json expert.json
    python -m policy.evaluate --game swap --checkpoint runs/sft-swap --gif play.gif

Each step every board is drawn, the policy writes a response (the model samples at
`--temperature`; 0 is greedy), the response is scored on the device (`policy.rewards`) and the
board steps with the parsed move (an invalid move leaves it unchanged). Reported, over all boards
and steps:

    valid_move_rate    fraction of answers that are legal moves
    mean_game_reward   the game's own reward per step (points; -1 for an invalid move)
    perception_exact   fraction of responses whose <perception> block is exactly the board
    format_rate        fraction of responses with all three tag pairs in order

`--policy random` answers a uniformly random move of the action space in the right format with
an empty perception; `--policy expert` writes the cold start's target (truth + expert move).
Held-out boards come from `fold_in(key(seed), HELD_OUT)`, a stream training never draws from.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

import jaxgym
import render
from jaxgym import text as game_text
from policy import episodes, sample, tokenizer as tokenization
from policy import rewards as reward_fns

METRICS = ("valid_move_rate", "mean_game_reward", "perception_exact", "format_rate")


@dataclasses.dataclass
class ModelPolicy:
    """A model's parameters, sampling at a temperature (0: greedy); `ModelPolicy.load(DIR)`
    reads a checkpoint, the constructor takes parameters in memory (a run in progress)."""

    graphdef: Any
    params: Any
    tokenizer: tokenization.GameTokenizer
    model_cfg: Any
    budget: int  # response tokens
    temperature: float = 0.0
    settings: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def load(cls, checkpoint_dir: str, temperature: float = 0.0) -> "ModelPolicy":
        from policy.sft import load_policy

        graphdef, params, tokenizer, model_cfg, settings = load_policy(checkpoint_dir)
        return cls(graphdef, params, tokenizer, model_cfg, settings["response_budget"],
                   temperature, settings)

    def respond(self, env, states, frames, key) -> tuple[jax.Array, jax.Array]:
        prompt = episodes.prompt_batch(env, self.tokenizer, self.model_cfg, frames.shape[0],
                                       self.settings.get("prompt_style", "full"),
                                       self.settings.get("image_first", False))
        samples = sample.generate(self.graphdef, self.params, prompt, frames, key,
                                  self.temperature, max_new_tokens=self.budget,
                                  eos_id=self.tokenizer.eos_id, pad_id=self.tokenizer.pad_id)
        return samples.tokens, samples.mask


class TextPolicy:
    """A baseline that writes texts on the host: "expert" or "random"."""

    def __init__(self, kind: str, tokenizer: tokenization.GameTokenizer):
        self.kind, self.tokenizer = kind, tokenizer

    def respond(self, env, states, frames, key) -> tuple[jax.Array, jax.Array]:
        if self.kind == "expert":
            texts = episodes.cold_start_texts(env, states)
        else:
            texts = episodes.base_texts(env, key, frames.shape[0])
        longest = max(len(self.tokenizer.encode(t)) for t in texts) + 1
        ids, mask = episodes.pad_responses(self.tokenizer, texts, longest)
        return jnp.asarray(ids), jnp.asarray(mask)


@functools.partial(jax.jit, static_argnames=("env",))
def step_boards(env, states, actions):
    """Every board of a batch advanced by its action (compiled once per game)."""
    return jax.vmap(env.step)(states, actions)


def evaluate(env, policy, boards: int = 256, steps: int = 1, seed: int = 0,
             record: int = 0, progress: bool = True) -> tuple[dict, list]:
    """Play `boards` held-out boards for `steps` steps. Returns (metrics, recorded pictures of
    the first `record` boards: annotated uint8 frames, board after board, a board's steps in
    order)."""
    tokenizer = getattr(policy, "tokenizer")
    reward_fn = reward_fns.compiled(env, tokenizer)
    states = episodes.deal(env, episodes.eval_key(seed), boards, 0)
    totals = {name: 0.0 for name in METRICS}
    pictures = [[] for _ in range(min(record, boards))]  # per board, one per step
    for step in tqdm(range(steps), desc=f"evaluate {env.name}", disable=not progress,
                     unit="step"):
        key = jax.random.fold_in(jax.random.key(seed), step)
        frames = episodes.draw(env, states)
        tokens, mask = policy.respond(env, states, frames, key)
        rewards = reward_fn(states, tokens, mask)
        totals["valid_move_rate"] += float(rewards.valid.mean())
        totals["mean_game_reward"] += float(rewards.points.mean())
        totals["perception_exact"] += float(rewards.perception.mean())
        totals["format_rate"] += float(rewards.format.mean())
        for b in range(min(record, boards)):
            answer = game_text.extract_answer(tokenizer.decode_response(tokens[b], mask[b]))
            frame = np.asarray(frames[b])
            zoom = max(1, 320 // frame.shape[1])  # small boards: big enough to read the caption
            frame = frame.repeat(zoom, axis=0).repeat(zoom, axis=1)
            verdict = f"{'valid' if rewards.valid[b] else 'invalid'} ({float(rewards.points[b]):+g})"
            seen = "board read right" if rewards.perception[b] else "board read wrong"
            pictures[b].append(render.annotate(
                frame, [f"board {b}, step {step + 1}: {answer}"[:40], f"{verdict}, {seen}"]))
        states = step_boards(env, states, rewards.action)
    return ({name: total / steps for name, total in totals.items()},
            [picture for board in pictures for picture in board])


def table(rows: dict[str, dict[str, Any]]) -> str:
    """A plain-text table: one row per policy, one column per metric."""
    header = f"{'policy':<12}" + "".join(f"{m:>18}" for m in METRICS)
    lines = [header, "-" * len(header)]
    for name, metrics in rows.items():
        lines.append(f"{name:<12}" + "".join(f"{metrics[m]:>18.3f}" for m in METRICS))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", default="swap", choices=sorted(jaxgym.list_games()))
    parser.add_argument("--preset", default=None,
                        help="the game's difficulty preset (default: the checkpoint's, or easy)")
    parser.add_argument("--policy", default="model", choices=("model", "random", "expert"))
    parser.add_argument("--checkpoint", help="a checkpoint folder (for --policy model)")
    parser.add_argument("--boards", type=int, default=256)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the metrics to this file")
    parser.add_argument("--gif", help="write an animation of the first boards being played")
    parser.add_argument("--gif-boards", type=int, default=4)
    args = parser.parse_args(argv)
    if args.boards < 1 or args.steps < 1:
        parser.error("--boards and --steps must be positive")
    if args.temperature < 0:
        parser.error("--temperature must be >= 0")
    preset = args.preset
    if args.policy == "model":
        if not args.checkpoint:
            parser.error("--policy model needs --checkpoint DIR")
        try:
            policy = ModelPolicy.load(args.checkpoint, args.temperature)
        except (FileNotFoundError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    else:
        policy = TextPolicy(args.policy, tokenization.default())
    if preset is None:
        preset = "easy"
        if args.policy == "model":
            run = policy.settings.get("sft") or policy.settings.get("train") or {}
            if run.get("game") not in (None, args.game):
                print(f"error: {args.checkpoint} was trained on {run.get('game')!r}, not "
                      f"{args.game!r}", file=sys.stderr)
                return 2
            preset = run.get("board_preset") or preset
    env = jaxgym.make(args.game, preset)
    metrics, pictures = evaluate(env, policy, args.boards, args.steps, args.seed,
                                 record=args.gif_boards if args.gif else 0)
    print(table({args.policy: metrics}))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(metrics, game=args.game, preset=preset, policy=args.policy,
                           boards=args.boards, steps=args.steps, seed=args.seed,
                           temperature=args.temperature), f, indent=1)
        print(f"wrote {args.json}")
    if args.gif:
        render.save_animation(args.gif, pictures, fps=1.0)
        print(f"wrote {args.gif} ({len(pictures)} frames)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
