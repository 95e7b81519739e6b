"""The VLM's side of a game, in text: the prompt, the ground-truth perception of a board, the
answer format, and the parser that turns a model's answer back into an action. Each game says
what is particular to it (`Env.instructions`, `cell_names`, `cell_separator`, `rationale`);
this module holds what every game shares.

A response looks like

    <perception>Red circle | Blue square | ...</perception><think>...</think><answer>(0, 1) (0, 2)</answer>

Answer rules (`parse_answer`), decided once for every game:
  * the text holds exactly one <answer>...</answer> pair (several answers, or none: -1);
  * pair games answer `(r1, c1) (r2, c2)`: 0-indexed (row, column) from the top-left, ASCII
    digits only (no signs, no unicode digits), at most 4 digits a number, spaces anywhere
    between the parts, an optional comma between the two cells;
  * digit games (2048) answer one ASCII digit, the action id, with optional spaces around it;
  * anything else, a cell off the board, or a pair that is no move of the game (for Swap: two
    cells that are not 4-neighbours) gives -1, `jaxgym.INVALID_ACTION`, which steps as an
    invalid move. `parse_answer` never raises.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from jaxgym.core import INVALID_ACTION, Env, PairEnv, State

TAGS = ("perception", "think", "answer")

_RESPONSE = re.compile(
    r"\s*<perception>(.*?)</perception>\s*<think>(.*?)</think>\s*<answer>(.*?)</answer>\s*",
    re.DOTALL,
)
_NUMBER = r"\s*([0-9]{1,4})\s*"
_PAIR_ANSWER = re.compile(rf"\s*\({_NUMBER},{_NUMBER}\)\s*,?\s*\({_NUMBER},{_NUMBER}\)\s*", re.ASCII)
_DIGIT_ANSWER = re.compile(r"\s*([0-9])\s*", re.ASCII)


# ---- public ---------------------------------------------------------------------------------


PROMPT_STYLES = ("full", "brief")


def prompt(env: Env, style: str = "full") -> str:
    """The instruction shown to the model with the board image. `style="brief"` keeps only its
    first sentence (the game and the board size): a model trained from scratch learns nothing
    from instructions that are the same on every board, and a long constant prefix dilutes its
    attention (docs/learnability.md)."""
    if style not in PROMPT_STYLES:
        raise ValueError(f"prompt style must be one of {PROMPT_STYLES}, got {style!r}")
    text = env.instructions()
    return text if style == "full" else text.split(". ")[0] + "."


def perception(env: Env, state: State) -> str:
    """The ground-truth description of one (unbatched) board, e.g. for Swap
    "Red circle | Blue square\\nGreen star | Red circle"."""
    return describe_board(env, state.board)


def describe_board(env: Env, board: Any) -> str:
    """`perception` of a bare board, int32[rows, cols] (e.g. one row of a batch on the host)."""
    board = np.asarray(board)
    if board.shape != env.board_shape:
        raise ValueError(f"perception takes one board of shape {env.board_shape}, got {board.shape}")
    return "\n".join(env.cell_separator.join(row) for row in env.cell_names(board))


def value_names(env: Env) -> list[str]:
    """The name of every board value v in [-1, env.num_tile_types], at index v + 1: what a
    cell holding v is called in perception text (device-side rewards build the text from it);
    "?" for a value no board of the game holds."""
    names = []
    for value in range(-1, env.num_tile_types + 1):
        try:
            names.append(env.cell_names(np.array([[value]]))[0][0])
        except IndexError:  # one past the last type, for games whose types start at 0
            names.append("?")
    return names


def cell_separator(env: Env) -> str:
    """What joins the cell names of a row in perception text (rows are joined by newlines)."""
    return env.cell_separator


def answer_kind(env: Env) -> str:
    """"pair" (`(r1, c1) (r2, c2)`) or "digit" (one digit, the action id)."""
    return "pair" if isinstance(env, PairEnv) else "digit"


def answer_text(env: Env, action: Any) -> str:
    """The answer string for an action: `(r1, c1) (r2, c2)` for pair games, the digit for
    digit games. ValueError for an action out of range."""
    if not 0 <= int(action) < env.num_actions:
        raise ValueError(f"{env.name}: action {action} is out of range [0, {env.num_actions})")
    if not isinstance(env, PairEnv):
        return str(int(action))
    r1, c1, r2, c2 = (int(x) for x in env.decode_action(action))
    return f"({r1}, {c1}) ({r2}, {c2})"


def rationale(env: Env, board: Any, action: Any) -> str:
    """A one-sentence reason for a move, the <think> text of the cold start's targets
    (`env.rationale`): for Swap "Swap (1, 2) with (1, 3): Red circle and Blue square.", for
    Shisen-Sho "Join (0, 0) with (0, 3): Red circle and Red circle.", for 2048 "Slide left."
    ValueError for an action out of range."""
    answer_text(env, action)  # range check
    return env.rationale(np.asarray(board), int(action))


def response_text(perception_text: str, think: str, answer: str) -> str:
    """A well-formed response: `<perception>..</perception><think>..</think><answer>..</answer>`."""
    return f"<perception>{perception_text}</perception><think>{think}</think><answer>{answer}</answer>"


def format_ok(text: Any) -> bool:
    """All three tag pairs present, each exactly once, in the order perception, think, answer,
    with nothing but whitespace outside them. Never raises."""
    if not isinstance(text, str):
        return False
    if any(text.count(f"<{tag}>") != 1 or text.count(f"</{tag}>") != 1 for tag in TAGS):
        return False
    return _RESPONSE.fullmatch(text) is not None


def extract_tag(text: Any, tag: str) -> str | None:
    """The content of the single <tag>...</tag> pair, or None (no pair, several, or the closing
    tag before the opening one)."""
    opening, closing = f"<{tag}>", f"</{tag}>"
    if not isinstance(text, str) or text.count(opening) != 1 or text.count(closing) != 1:
        return None
    start, end = text.index(opening) + len(opening), text.index(closing)
    return text[start:end] if start <= end else None


def extract_answer(text: Any) -> str | None:
    """`extract_tag(text, "answer")`."""
    return extract_tag(text, "answer")


def perception_ok(text: Any, truth: str) -> bool:
    """The single <perception> block of `text`, stripped of surrounding whitespace, is exactly
    `truth` (the ground-truth perception). Never raises."""
    block = extract_tag(text, "perception")
    return block is not None and block.strip() == truth


def perception_share(text: Any, truth: str) -> float:
    """The share of `truth`'s characters that the single <perception> block, stripped, has at
    the same place, up to the first "<" in it (where a tag or a special token's text begins;
    no perception text has one): partial credit for a partly read board (1.0 for an exact
    block; 0.0 without a block). Never raises."""
    block = extract_tag(text, "perception")
    if block is None or not truth:
        return 0.0
    block = block.strip().split("<", 1)[0]
    return sum(a == b for a, b in zip(block, truth)) / len(truth)


def parse_answer(env: Env, text: Any) -> int:
    """The action a response answers, or -1 (`INVALID_ACTION`) for anything that is not one
    well-formed, in-range move (rules in the module docstring). Never raises."""
    try:
        answer = extract_answer(text)
        if answer is None:
            return INVALID_ACTION
        if not isinstance(env, PairEnv):
            match = _DIGIT_ANSWER.fullmatch(answer)
            if match is None or int(match.group(1)) >= env.num_actions:
                return INVALID_ACTION
            return int(match.group(1))
        match = _PAIR_ANSWER.fullmatch(answer)
        if match is None:
            return INVALID_ACTION
        r1, c1, r2, c2 = (int(g) for g in match.groups())
        rows, cols = env.board_shape
        if not (r1 < rows and r2 < rows and c1 < cols and c2 < cols):
            return INVALID_ACTION
        return int(env.encode_action(r1, c1, r2, c2))
    except Exception:  # a parser for model output must not crash the caller
        return INVALID_ACTION
