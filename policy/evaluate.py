"""Play held-out boards with a policy and report what it sees and does.

    python -m policy.evaluate --game swap --checkpoint runs/sft-swap --boards 256 --steps 1
    python -m policy.evaluate --game swap --policy expert --json expert.json
    python -m policy.evaluate --game swap --checkpoint runs/sft-swap --gif play.gif
    python -m policy.evaluate --game mix --policy random      # every game, per-game figures too

Each step every board is drawn, the policy writes a response (the model samples at
`--temperature`; 0 is greedy), the response is scored on the device (`policy.rewards`) and the
board steps with the parsed move (an invalid move leaves it unchanged). Reported, over all boards
and steps (`policy.evaluation`):

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
import json
import sys

import jaxgym
import render
from policy import tokenizer as tokenization
from policy.episodes import GameSet
from policy.evaluation import ModelPolicy, TextPolicy, evaluate, table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", default="swap", choices=sorted(jaxgym.list_games()) + ["mix"],
                        help="a game, or mix: every game, boards split evenly")
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
    games = GameSet.make(args.game, preset, policy.prompt_style, policy.image_first,
                         policy.restate_board)
    try:
        games.counts(args.boards)
    except ValueError as err:
        parser.error(str(err))
    metrics, pictures = evaluate(games, policy, args.boards, args.steps, args.seed,
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
