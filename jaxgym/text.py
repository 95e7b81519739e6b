"""The VLM's side of a game, in text: the prompt, the ground-truth perception of a board, the
answer format, and the parser that turns a model's answer back into an action.

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

import dataclasses
import re
from typing import Any, Callable

import numpy as np

from jaxgym import tiles
from jaxgym.core import INVALID_ACTION, Env, State

TAGS = ("perception", "think", "answer")

_RESPONSE = re.compile(
    r"\s*<perception>(.*?)</perception>\s*<think>(.*?)</think>\s*<answer>(.*?)</answer>\s*",
    re.DOTALL,
)
_NUMBER = r"\s*([0-9]{1,4})\s*"
_PAIR_ANSWER = re.compile(rf"\s*\({_NUMBER},{_NUMBER}\)\s*,?\s*\({_NUMBER},{_NUMBER}\)\s*", re.ASCII)
_DIGIT_ANSWER = re.compile(r"\s*([0-9])\s*", re.ASCII)


# ---- per-game text --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GameText:
    """How one game talks: its prompt, the names of a board's cells (rows of strings, joined by
    `separator` into perception lines), and its answer kind: "pair" (`(r1, c1) (r2, c2)`, through
    `env.encode_action`) or "digit" (one ASCII digit, the action id itself)."""

    prompt: Callable[[Env], str]
    cells: Callable[[Env, np.ndarray], list[list[str]]]
    separator: str = " | "
    answer: str = "pair"


def _swap_prompt(env: Env) -> str:
    return (
        f"You are playing Swap, a match-3 puzzle on a {env.rows}x{env.cols} grid. Every cell holds "
        "a tile with a colour and a shape. Swap two horizontally or vertically adjacent tiles so "
        "that three or more identical tiles (same colour and same shape) line up in a row or a "
        "column; they are removed and score points. Cells are (row, column), 0-indexed from the "
        "top-left.\n"
        "First describe the board inside <perception></perception>: one line per row, cells "
        'named like "Red circle" and joined by " | ". Then reason inside <think></think>. '
        "Then give your move inside <answer></answer> as (row, column) (row, column), like (0, 1) (0, 2)."
    )


def _shape_cells(env: Env, board: np.ndarray) -> list[list[str]]:
    names = tiles.tile_names(env.colours, env.shapes, env.palette)
    return [[names[t] if t >= 0 else EMPTY for t in row] for row in board]


def _twenty48_prompt(env: Env) -> str:
    return (
        f"You are playing 2048 on a {env.size}x{env.size} grid. Each tile shows a power of two. "
        "A move slides every tile as far as it can in one direction; two tiles of the same value "
        "that meet merge to one tile of their sum (once per move), and the merged values are "
        "your score. A move that changes nothing is not allowed. After every valid move a new 2 or 4 "
        "appears on an empty cell.\n"
        "First describe the board inside <perception></perception>: one line per row, cells "
        'written as their number, "-" for an empty cell, joined by "|" (like 2|-|4|-). Then '
        "reason inside <think></think>. Then give your move inside <answer></answer> as one "
        "digit: 0 up, 1 right, 2 down, 3 left."
    )


def _number_cells(env: Env, board: np.ndarray) -> list[list[str]]:
    return [[str(2 ** int(k)) if k > 0 else EMPTY for k in row] for row in board]


def _shisensho_prompt(env: Env) -> str:
    return (
        f"You are playing Shisen-Sho on a {env.rows}x{env.cols} grid. Every cell holds a tile with "
        "a colour and a shape, or is empty. Pick two identical tiles (same colour and same shape) "
        "that can be joined by a path of at most three straight lines (at most two turns) through "
        "empty cells; the path may go around the outside of the board. Both tiles are removed. "
        "Cells are (row, column), 0-indexed from the top-left.\n"
        "First describe the board inside <perception></perception>: one line per row, cells "
        f'named like "Red circle", empty cells as "{EMPTY}", joined by " | ". Then reason inside '
        "<think></think>. Then give your pair inside <answer></answer> as (row, column) (row, column), like (0, 1) (0, 2)."
    )


def _shisensho_images_prompt(env: Env) -> str:
    classes = ", ".join(env.class_names)
    return (
        f"You are playing Shisen-Sho with pictures on a {env.rows}x{env.cols} grid. Every cell "
        f"shows a picture of one of these classes: {classes}; or is empty. Pick two pictures of "
        "the same class (they may be different pictures) that can be joined by a path of at most "
        "three straight lines (at most two turns) through empty cells; the path may go around the "
        "outside of the board. Both are removed. Cells are (row, column), 0-indexed from the "
        "top-left.\n"
        "First describe the board inside <perception></perception>: one line per row, each cell "
        f'named by its class, empty cells as "{EMPTY}", joined by " | ". Then reason inside '
        "<think></think>. Then give your pair inside <answer></answer> as (row, column) (row, column), like (0, 1) (0, 2)."
    )


def _class_cells(env: Env, board: np.ndarray) -> list[list[str]]:
    names = env.class_names
    return [[names[t // env.images_per_class] if t >= 0 else EMPTY for t in row] for row in board]


EMPTY = "-"
"""How every game names an empty cell in perception text."""

_GAME_TEXT: dict[str, GameText] = {
    "swap": GameText(_swap_prompt, _shape_cells),
    "shisensho": GameText(_shisensho_prompt, _shape_cells),
    "shisensho-images": GameText(_shisensho_images_prompt, _class_cells),
    "2048": GameText(_twenty48_prompt, _number_cells, separator="|", answer="digit"),
}


def _lookup(env: Env) -> GameText:
    if env.name not in _GAME_TEXT:
        raise NotImplementedError(f"no text interface for game {env.name!r}")
    return _GAME_TEXT[env.name]


# ---- public ---------------------------------------------------------------------------------


PROMPT_STYLES = ("full", "brief")


def prompt(env: Env, style: str = "full") -> str:
    """The instruction shown to the model with the board image. `style="brief"` keeps only its
    first sentence (the game and the board size): a model trained from scratch learns nothing
    from instructions that are the same on every board, and a long constant prefix dilutes its
    attention (docs/learnability.md)."""
    if style not in PROMPT_STYLES:
        raise ValueError(f"prompt style must be one of {PROMPT_STYLES}, got {style!r}")
    text = _lookup(env).prompt(env)
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
    game = _lookup(env)
    return "\n".join(game.separator.join(row) for row in game.cells(env, board))


def value_names(env: Env) -> list[str]:
    """The name of every board value v in [-1, env.num_tile_types], at index v + 1: what a
    cell holding v is called in perception text (device-side rewards build the text from it);
    "?" for a value no board of the game holds."""
    names = []
    for value in range(-1, env.num_tile_types + 1):
        try:
            names.append(_lookup(env).cells(env, np.array([[value]]))[0][0])
        except IndexError:  # one past the last type, for games whose types start at 0
            names.append("?")
    return names


def cell_separator(env: Env) -> str:
    """What joins the cell names of a row in perception text (rows are joined by newlines)."""
    return _lookup(env).separator


def answer_kind(env: Env) -> str:
    """"pair" (`(r1, c1) (r2, c2)`) or "digit" (one digit, the action id)."""
    return _lookup(env).answer


def answer_text(env: Env, action: Any) -> str:
    """The answer string for an action: `(r1, c1) (r2, c2)` for pair games, the digit for
    digit games. ValueError for an action out of range."""
    game = _lookup(env)
    if not 0 <= int(action) < env.num_actions:
        raise ValueError(f"{env.name}: action {action} is out of range [0, {env.num_actions})")
    if game.answer == "digit":
        return str(int(action))
    r1, c1, r2, c2 = (int(x) for x in env.decode_action(action))
    return f"({r1}, {c1}) ({r2}, {c2})"


DIRECTIONS = ("up", "right", "down", "left")
"""The names of 2048's actions 0..3."""


def rationale(env: Env, board: Any, action: Any) -> str:
    """A one-sentence reason for a move, the <think> text of the cold start's targets: for
    Swap "Swap Red circle at (1, 2) with Blue square at (1, 3).", for Shisen-Sho "Join Red
    circle at (0, 0) with Red circle at (0, 3).", for 2048 "Slide left." ValueError for an
    action out of range."""
    game = _lookup(env)
    answer_text(env, action)  # range check
    if game.answer == "digit":
        return f"Slide {DIRECTIONS[int(action)]}."
    names = game.cells(env, np.asarray(board))
    r1, c1, r2, c2 = (int(x) for x in env.decode_action(action))
    verb = "Swap" if env.name == "swap" else "Join"
    return f"{verb} {names[r1][c1]} at ({r1}, {c1}) with {names[r2][c2]} at ({r2}, {c2})."


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


def parse_answer(env: Env, text: Any) -> int:
    """The action a response answers, or -1 (`INVALID_ACTION`) for anything that is not one
    well-formed, in-range move (rules in the module docstring). Never raises."""
    try:
        answer = extract_answer(text)
        if answer is None:
            return INVALID_ACTION
        if _lookup(env).answer == "digit":
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
