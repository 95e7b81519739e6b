"""Does a checkpoint's move depend on what its perception block read?

    python -m bench.coupling runs/sft-swap --boards 256
    python -m bench.coupling runs/swap-g1 --json coupling.json

A cold start trained with `restate_board` writes the board twice: as names in its
`<perception>` block and as one code a cell at the start of its `<think>` ("Board: AE AE AB
..."), from which the move is read. GRPO credits every token of a response with the response's
reward, so the game reward teaches perception only where a wrong perception block leads to a
worse move. This answers held-out boards greedily (as `policy.evaluate`) and reports

    valid_move_rate, perception_exact, perception_share   as policy.evaluate
    restated_exact      the think's restated board equals the board
    restated_cells      share of the restated board's cells that are right
    perception_cells    share of the perception block's cells named right
    restated_is_perception  the restated board is the perception block's cells, code for name
                        (right or wrong): the think copies the block rather than the image
    valid_if_perception_exact / valid_if_perception_wrong
                        the valid-move rate of boards whose block is exact / is not; equal
                        rates mean the move does not depend on the block

Only pair games whose think restates the board (the `cpu` and `gpu` cold starts) have the
restated figures; `nan` where a group is empty.
"""

from __future__ import annotations

import argparse
import re

import jax
import numpy as np

import jaxgym
from bench import write_json
from jaxgym import text as game_text
from policy import episodes, evaluation
from policy.tokenizer import cell_code

RESTATED = re.compile(r"Board:((?: [A-Z]{2})*)")


def read_cells(env, perception_text: str) -> list[int | None]:
    """The board values a perception block names, in reading order (None: a name no cell
    has)."""
    names = game_text.value_names(env)
    cells = [c.strip() for row in perception_text.split("\n")
             for c in row.split(game_text.cell_separator(env).strip())]
    return [names.index(c) - 1 if c in names else None for c in cells if c]


def restated_codes(response: str) -> list[str]:
    """The cell codes after the think's "Board:" (empty when it has none)."""
    match = RESTATED.search(response)
    return match.group(1).split() if match else []


def coupling(env, boards: np.ndarray, texts: list[str], valid: np.ndarray) -> dict:
    """The figures of this module's docstring for responses `texts` to `boards` (int32[B, rows,
    cols]) whose moves were valid where `valid` (bool[B]) says."""
    rows = []
    for board, text in zip(boards, texts):
        truth = [cell_code(v) for v in np.asarray(board).ravel()]
        block = game_text.extract_tag(text, "perception") or ""
        read = read_cells(env, block)
        as_codes = [cell_code(v) if v is not None else "?" for v in read]
        codes = restated_codes(text)
        rows.append((codes == truth,
                     sum(c == t for c, t in zip(codes, truth)) / len(truth),
                     sum(c == t for c, t in zip(as_codes, truth)) / len(truth),
                     bool(codes) and codes == as_codes,
                     game_text.perception_ok(text, game_text.describe_board(env, board))))
    restated_exact, restated_cells, perception_cells, copied, exact = map(np.asarray, zip(*rows))
    valid = np.asarray(valid, bool)
    mean = lambda x: float(np.mean(x)) if len(x) else float("nan")
    return dict(valid_move_rate=mean(valid), perception_exact=mean(exact),
                restated_exact=mean(restated_exact), restated_cells=mean(restated_cells),
                perception_cells=mean(perception_cells), restated_is_perception=mean(copied),
                valid_if_perception_exact=mean(valid[exact]),
                valid_if_perception_wrong=mean(valid[~exact]),
                boards_perception_exact=int(exact.sum()))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a policy.sft or policy.train run folder")
    parser.add_argument("--boards", type=int, default=256, help="held-out boards")
    parser.add_argument("--seed", type=int, default=0, help="the held-out boards' seed")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.boards < 1:
        parser.error("--boards must be >= 1")
    policy = evaluation.ModelPolicy.load(args.checkpoint)
    run = policy.settings.get("sft") or policy.settings.get("train") or {}
    game, preset = run.get("game"), run.get("board_preset")
    if game not in jaxgym.list_games():
        parser.error(f"{args.checkpoint} plays {game!r}: this measures one game's checkpoint")
    games = episodes.GameSet.make(game, preset, policy.prompt_style, policy.image_first,
                                  policy.restate_board)
    states = games.deal(episodes.eval_key(args.seed), args.boards, 0)
    tokens, mask = policy.respond(games, states, games.draw(states), jax.random.key(args.seed))
    rewards = games.score(policy.tokenizer, states, tokens, mask, jit=True)
    texts = [policy.tokenizer.decode_response(t, m) for t, m in zip(tokens, mask)]
    result = coupling(games.envs[0], np.asarray(states[0].board), texts,
                      np.asarray(rewards.valid) > 0)
    result.update(checkpoint=args.checkpoint, game=game, board_preset=preset, boards=args.boards)
    for name, value in result.items():
        print(f"{name:28s} {value:.3f}" if isinstance(value, float) else f"{name:28s} {value}")
    return write_json(args.json, result)


if __name__ == "__main__":
    main()
