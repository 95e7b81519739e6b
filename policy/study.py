"""The paper's study in miniature: `python -m policy.study --game swap --preset cpu --out DIR`.

Runs G0 (RL from the format-only base) and G1 (RL from the perception-enhanced cold start)
with the same RL budget, and measures, on the same held-out boards, each policy before and
after RL next to the expert and a random policy: valid-move rate, mean game reward (the game's
own points per move, -1 for an invalid one), perception exact-match and the share of the
board text's characters the perception block has in place, all greedy. Writes
`DIR/study.json` (per policy: `before` and `after`, each with `valid_move_rate`,
`mean_game_reward`, `perception_exact`, `perception_share`), `DIR/study.md` (the table) and
`DIR/study.png` (the training curves of both runs). Each run lives in `DIR/g0` and `DIR/g1`;
an interrupted study picks up where it stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import jaxgym
from policy import (checkpoint, config, evaluation, loop, plot, sft, tokenizer as tokenization,
                    train)
from policy.episodes import GameSet

KEYS = ("valid_move_rate", "mean_game_reward", "perception_exact", "perception_share")
SHARED = ("steps", "init_steps", "init_schedule", "init_batch", "init_think_from", "temperature",
          "rewards")
"""The TrainConfig settings a study's flags set for both modes alike (flag = name with dashes)."""


def measure(game: str, board_preset: str, policy, boards: int, seed: int) -> dict:
    """A policy's held-out metrics, with the prompt it was trained with."""
    games = GameSet.make(game, board_preset, policy.prompt_style, policy.image_first,
                         policy.restate_board)
    metrics, _ = evaluation.evaluate(games, policy, boards=boards, steps=1, seed=seed,
                                     progress=False)
    return {key: metrics[key] for key in KEYS}


def run_mode(cfg: train.TrainConfig, folder: str, boards: int) -> dict:
    """Train one mode (resuming if it was interrupted); its before/after metrics."""
    if checkpoint.latest_step(folder) != cfg.steps:
        resume = checkpoint.latest_step(folder) is not None
        train.train(cfg, folder, resume=resume)
    before = evaluation.ModelPolicy.load(os.path.join(folder, "init"))
    after = evaluation.ModelPolicy.load(folder)
    return dict(before=measure(cfg.game, cfg.board_preset, before, boards, cfg.seed),
                after=measure(cfg.game, cfg.board_preset, after, boards, cfg.seed))


def table(results: dict) -> str:
    """A Markdown table: one row per policy, before -> after for each metric."""
    lines = ["| policy | " + " | ".join(f"{k} before -> after" for k in KEYS) + " |",
             "|---|" + "---|" * len(KEYS)]
    for name, r in results.items():
        cells = [f"{r['before'][k]:.3f} -> {r['after'][k]:.3f}" for k in KEYS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", default="swap", choices=sorted(jaxgym.list_games()))
    parser.add_argument("--preset", default="cpu", choices=sorted(train.RUN_PRESETS),
                        help="run size of both modes (policy.train's presets)")
    parser.add_argument("--out", required=True, help="study folder")
    parser.add_argument("--boards", type=int, default=256, help="held-out boards measured")
    parser.add_argument("--steps", type=int, default=None, help="RL steps of each mode")
    parser.add_argument("--init-steps", type=int, default=None,
                        help="cold-start and base steps of both modes (default: the preset's "
                             "cold start, a fifth of it for the base); fewer leave RL more to do")
    parser.add_argument("--init-schedule", choices=("constant", "cosine"), default=None,
                        help="their learning-rate schedule (default: the preset's, cosine); "
                             "constant stops a short cold start at a full rate, mid-learning")
    parser.add_argument("--init-batch", type=int, default=None,
                        help="their boards (images) per step (default: the preset's, 32); fewer "
                             "leave the cold start's perception partial, while its text-only "
                             "think still learns the move")
    parser.add_argument("--init-think-from", choices=sft.THINK_FROM, default=None,
                        help="where the cold start's text-only rows start (default: the "
                             "preset's, think); perception trains the think to restate the "
                             "board from the perception block, so the move depends on it")
    parser.add_argument("--temperature", type=float, default=None,
                        help="RL's sampling temperature in both modes (default: the preset's, 1)")
    parser.add_argument("--rewards", type=config.comma_list, default=None,
                        help="comma-separated rewards both modes train on (default: "
                             f"{','.join(train.REWARDS)}); e.g. shaped,perception_share,format "
                             "gives partial credit for the perception block")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    options = dict(train.RUN_PRESETS[args.preset], game=args.game, seed=args.seed)
    for name in SHARED:  # flags left out keep the preset's value
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    started = time.time()
    os.makedirs(args.out, exist_ok=True)
    results, configs = {}, {}
    for mode in ("g0", "g1"):
        cfg = config.build(train.TrainConfig, **options, mode=mode)
        print(f"== {mode} ==", flush=True)
        results[mode] = run_mode(cfg, os.path.join(args.out, mode), args.boards)
        configs[mode] = dataclasses.asdict(cfg)
    tok = tokenization.default()
    for kind in ("expert", "random"):
        fixed = measure(cfg.game, cfg.board_preset, evaluation.TextPolicy(kind, tok),
                        args.boards, args.seed)
        results[kind] = dict(before=fixed, after=fixed)
    summary = dict(game=args.game, preset=args.preset, boards=args.boards, seed=args.seed,
                   seconds=round(time.time() - started, 1), train=configs, results=results)
    with open(os.path.join(args.out, "study.json"), "w") as f:
        json.dump(summary, f, indent=1)
    text = table(results)
    with open(os.path.join(args.out, "study.md"), "w") as f:
        f.write(text + "\n")
    runs = {mode: loop.read_metrics(os.path.join(args.out, mode)) for mode in ("g0", "g1")}
    plot.plot_runs(runs, os.path.join(args.out, "study.png"),
                   title=f"{args.game}: G0 (from the base) vs G1 (from the cold start)")
    print(text)
    print(f"wrote {args.out}/study.json, study.md, study.png in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
