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
    perception_share   mean share of the board text's characters the block has in place
    format_rate        fraction of responses with all three tag pairs in order

`--policy random` answers a uniformly random move of the action space in the right format with
an empty perception; `--policy expert` writes the cold start's target (truth + expert move).
Held-out boards come from `fold_in(key(seed), HELD_OUT)`, a stream training never draws from.

Any model behind an OpenAI-compatible chat-completions server (vLLM, SGLang, Ollama, a hosted
API; `policy.api`):

    python -m policy.evaluate --game swap --api-base http://127.0.0.1:8000/v1 \
        --api-model Qwen/Qwen2.5-VL-7B-Instruct --protocol paper --results swap-qwen.jsonl

sends each board's instructions and frame (a base64 PNG), `--concurrency` requests at a time,
retrying 429s, 5xx and timeouts with back-off. The key, if the server wants one, is read from
the environment variable named by `--api-key-env` (default OPENAI_API_KEY) and never printed.
`--results F` keeps every reply; a rerun with the same file asks only for what is missing.

A downloaded Qwen2-VL / Qwen2.5-VL folder, zero-shot in-process (`policy.pretrained`; the
paper's base-model rows):

    python -m policy.evaluate --game swap --model Qwen2.5-VL-3B-Instruct --boards 32 --max-tokens 512

draws the boards at a cell size the checkpoint reads unchanged, writes each prompt in the
folder's chat template and decodes greedily with a key/value cache (`policy.pretrained`).

`--protocol paper` evaluates as the paper does: 10 boards x 100 moves (unless --boards or
--steps say otherwise), a board whose episode ends dealt afresh, 2048's boards after 100 random
warm-up moves; its headline figure is `hit_rate`, the fraction of moves that score.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import jaxgym
import render
from policy import pretrained_model, tokenizer as tokenization
from policy.episodes import GameSet
from policy.api import APIPolicy
from policy.pretrained import PretrainedPolicy
from policy.evaluation import PAPER_PROTOCOL, PROTOCOLS, ModelPolicy, TextPolicy, evaluate, table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", default="swap", choices=sorted(jaxgym.list_games()) + ["mix"],
                        help="a game, or mix: every game, boards split evenly")
    parser.add_argument("--preset", default=None,
                        help="the game's difficulty preset (default: the checkpoint's, or easy)")
    parser.add_argument("--policy", default="model", choices=("model", "random", "expert"))
    parser.add_argument("--checkpoint", help="a checkpoint folder (for --policy model)")
    parser.add_argument("--model", help="a downloaded Qwen2-VL / Qwen2.5-VL folder, played "
                        "zero-shot in its own chat template (greedy, up to --max-tokens)")
    parser.add_argument("--boards", type=int, default=None, help="default 256 (paper: 10)")
    parser.add_argument("--steps", type=int, default=None, help="default 1 (paper: 100)")
    parser.add_argument("--protocol", default="jaxgym", choices=PROTOCOLS)
    parser.add_argument("--api-base", help="an OpenAI-compatible server, e.g. "
                                           "http://127.0.0.1:8000/v1 (the policy is then its model)")
    parser.add_argument("--api-model", help="the model name the server knows")
    parser.add_argument("--api-key-env", default="OPENAI_API_KEY",
                        help="environment variable holding the API key, if any")
    parser.add_argument("--concurrency", type=int, default=4, help="requests at a time")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    parser.add_argument("--retries", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=1024, help="tokens per reply")
    parser.add_argument("--results", help="JSON-lines file of replies; a rerun resumes it")
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the metrics to this file")
    parser.add_argument("--gif", help="write an animation of the first boards being played")
    parser.add_argument("--gif-boards", type=int, default=4)
    args = parser.parse_args(argv)
    paper = args.protocol == "paper"
    if args.boards is None:
        args.boards = PAPER_PROTOCOL["boards"] if paper else 256
    if args.steps is None:
        args.steps = PAPER_PROTOCOL["steps"] if paper else 1
    if args.boards < 1 or args.steps < 1:
        parser.error("--boards and --steps must be positive")
    if args.temperature < 0:
        parser.error("--temperature must be >= 0")
    preset = args.preset
    if args.api_base:
        if not args.api_model:
            parser.error("--api-base needs --api-model NAME")
        try:
            policy = APIPolicy(args.api_base, args.api_model, args.api_key_env,
                               args.concurrency, args.timeout, args.retries,
                               max_tokens=args.max_tokens, temperature=args.temperature,
                               results=args.results)
        except ValueError as err:
            parser.error(str(err))
        args.policy = "api"
    elif args.model:
        if args.game == "mix":
            parser.error("--model plays one game at a time (its frames are sized to fit the "
                         "checkpoint); pass --game NAME")
        try:
            policy = PretrainedPolicy(args.model, args.max_tokens)
        except (FileNotFoundError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        args.policy = "pretrained"
    elif args.policy == "model":
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
    try:  # boards drawn at a size the checkpoint reads unchanged
        if args.model:
            games = dataclasses.replace(games, envs=(policy.fitted(games.envs[0]),))
        elif args.policy == "model" and policy.settings.get("pretrained"):
            games = pretrained_model.fit(games, policy.settings["pretrained"])
    except ValueError as err:
        parser.error(str(err))
    try:
        games.counts(args.boards)
    except ValueError as err:
        parser.error(str(err))
    try:
        metrics, pictures = evaluate(games, policy, args.boards, args.steps, args.seed,
                                     record=args.gif_boards if args.gif else 0,
                                     protocol=args.protocol)
    except ValueError as err:  # a results file written for other boards
        print(f"error: {err}", file=sys.stderr)
        return 2
    run = dict(game=args.game, preset=preset, policy=args.policy, boards=args.boards,
               steps=args.steps, seed=args.seed, temperature=args.temperature,
               protocol=args.protocol)
    if args.model:
        run.update(model=args.model, variant=policy.config.variant,
                   tile_px=games.envs[0].tile_px, max_tokens=args.max_tokens)
    if args.api_base:
        run.update(api_model=args.api_model, api_requests=policy.asked,
                   api_errors=policy.errors)
        if policy.errors:
            print(f"warning: {policy.errors} requests failed after {args.retries} retries and "
                  "count as invalid moves; rerun with the same --results to ask them again",
                  file=sys.stderr)
    print(table({args.policy: metrics}))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(metrics, **run), f, indent=1)
        print(f"wrote {args.json}")
    if args.gif:
        render.save_animation(args.gif, pictures, fps=1.0)
        print(f"wrote {args.gif} ({len(pictures)} frames)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
