"""Swap, the match-3 game of VLM-Gym (Chen et al. 2025, "G1: Bootstrapping Perception and
Reasoning Abilities of Vision-Language Model via Reinforcement Learning", arXiv 2505.13426),
with the rules of docs/DESIGN.md.

Board:   int32[rows, cols]; tile type = colour * shapes + shape, in [0, colours * shapes).
Action:  swap two 4-neighbour cells. Actions number the board's edges: first the horizontal
         swaps (r, c)<->(r, c+1) row-major, then the vertical swaps (r, c)<->(r+1, c) row-major,
         so num_actions = rows*(cols-1) + (rows-1)*cols (112 at 8x8). A pair of cells that are
         not 4-neighbours on the board has no action: `encode_action` gives -1 for it.
Valid:   the swap leaves a run of >= 3 identical tiles in some row or column.
Reward:  sum over cascade rounds of k*(k-1), k = cells removed that round; -1 if invalid
         (the board is then unchanged).
Chance:  refills after gravity are uniform over tile types; a board left without a valid swap
         is reshuffled.
End:     never terminates (a stuck board is reshuffled); set `max_steps` to truncate.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxgym import chance, loops, sprites, tiles
from jaxgym.core import INVALID_ACTION, PairEnv, State, is_legal, register, require

CELL = jnp.int8
"""The cells' dtype inside a step (tile types < 60, empty -1): four times the SIMD lanes of int32
on the CPU. `State.board` stays int32."""

# ---- runs, gravity and refills ------------------------------------------------------------


def _runs_along_rows(board: jax.Array) -> jax.Array:
    """bool[rows, cols]: cells inside a horizontal run of >= 3 equal tiles (empty, -1, never)."""
    if board.shape[1] < 3:
        return jnp.zeros(board.shape, bool)
    left, mid, right = board[:, :-2], board[:, 1:-1], board[:, 2:]
    starts = (left == mid) & (mid == right) & (left >= 0)
    pad = lambda before, after: jnp.pad(starts, ((0, 0), (before, after)))
    return pad(0, 2) | pad(1, 1) | pad(2, 0)


def find_runs(board: jax.Array) -> jax.Array:
    """bool[rows, cols]: cells in a row or column run of >= 3 equal tiles.

    [[0 0 0 1]      [[T T T T]
     [2 1 2 1]  ->   [F F F T]
     [2 2 1 1]]      [F F F T]]
    """
    return _runs_along_rows(board) | _runs_along_rows(board.T).T


def drop_and_refill(board: jax.Array, cleared: jax.Array, new_tiles: jax.Array) -> jax.Array:
    """Remove the `cleared` cells, let the tiles above them fall, fill the top from `new_tiles`.

    One column, top to bottom, X cleared: [a, b, X, c] -> [new, a, b, c].
    board, new_tiles: int[rows, cols]; cleared: bool[rows, cols] -> int[rows, cols] (board's dtype)
    """
    rows = board.shape[0]
    new_tiles = new_tiles.astype(board.dtype)
    cleared_below = jnp.cumsum(cleared[::-1], axis=0, dtype=jnp.int32)[::-1] - cleared
    landing_row = jnp.arange(rows)[:, None] + cleared_below  # where each kept tile ends up
    # lands[src, dst, col]: the tile at (src, col) falls to (dst, col). A dense one-hot beats a
    # scatter or a sort on small boards and vectorises over the batch.
    lands = (landing_row[:, None, :] == jnp.arange(rows)[None, :, None]) & ~cleared[:, None, :]
    fallen = jnp.sum(jnp.where(lands, board[:, None, :], 0), axis=0, dtype=board.dtype)
    return jnp.where(jnp.any(lands, axis=0), fallen, new_tiles)


# ---- which swaps score ----------------------------------------------------------------------


def _landing_cells(along: jax.Array, across: jax.Array) -> jax.Array:
    """Cells removed around one cell a tile lands on, given the equal tiles next to it along
    the swap axis (one side) and across it (both sides): `along=2, across=1 -> 3`."""
    along = jnp.where(along >= 2, along, 0)
    across = jnp.where(across >= 2, across, 0)
    return along + across + ((along + across) > 0)


def _row_swap_gains(board: jax.Array) -> jax.Array:
    """int8[rows, cols-1]: cells the first round removes if (r, c)<->(r, c+1) are swapped.

    Looks at most two cells each way, which is exact on a settled board (no run of 3), where
    no line holds three equal tiles in a row.
    """
    rows, cols = board.shape
    padded = jnp.pad(board, 2, constant_values=-1)

    def at(dr: int, dc: int) -> jax.Array:  # at(dr, dc)[r, c] = board[r + dr, c + dc]
        return padded[2 + dr : 2 + dr + rows, 2 + dc : 2 + dc + cols - 1]

    def count(tile: jax.Array, near: tuple[int, int], far: tuple[int, int]) -> jax.Array:
        first = at(*near) == tile
        return first.astype(jnp.int8) + (first & (at(*far) == tile))

    left_tile, right_tile = at(0, 0), at(0, 1)
    # right_tile lands on the left cell: its run can extend left, up or down (not right).
    into_left = _landing_cells(
        count(right_tile, (0, -1), (0, -2)),
        count(right_tile, (-1, 0), (-2, 0)) + count(right_tile, (1, 0), (2, 0)),
    )
    into_right = _landing_cells(
        count(left_tile, (0, 2), (0, 3)),
        count(left_tile, (-1, 1), (-2, 1)) + count(left_tile, (1, 1), (2, 1)),
    )
    return into_left + into_right


def swap_gains(board: jax.Array) -> jax.Array:
    """int32[num_actions]: cells removed in the first round by each swap (0: invalid swap)."""
    return _gains(board).astype(jnp.int32)


def _gains(board: jax.Array) -> jax.Array:
    # int8: at most 14 cells per swap, and four times the lanes of int32 on the CPU
    horizontal = _row_swap_gains(board)
    vertical = _row_swap_gains(board.T).T
    return jnp.concatenate([horizontal.ravel(), vertical.ravel()])


def legal_mask(board: jax.Array) -> jax.Array:
    """bool[num_actions]: the swaps that make a run."""
    return _gains(board) > 0


# ---- dealing and reshuffling ----------------------------------------------------------------


def cascade(
    board: jax.Array, seed: jax.Array, n_types: int, max_rounds: int
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Clear runs (scoring k*(k-1) for the k cells of a round), let tiles fall and refill the
    top, until no run remains or `max_rounds` rounds have passed.

    board: int32[rows, cols]; seed: uint32[] -> (board, runs, score int32[], rounds int32[]);
    `runs` is non-empty only if the round bound stopped the cascade.
    """

    def has_runs(seed, carry):
        _, runs, _, rounds = carry
        return jnp.any(runs) & (rounds < max_rounds)

    def clear_round(seed, carry):
        board, runs, score, rounds = carry
        cleared = jnp.sum(runs, dtype=jnp.int32)
        board = drop_and_refill(board, runs, chance.cell_ints(seed, 2 * rounds, board.shape, n_types))
        return board, find_runs(board), score + cleared * (cleared - 1), rounds + 1

    zero = jnp.zeros((), jnp.int32)
    return loops.while_loop(has_runs, clear_round, (board, find_runs(board), zero, zero), seed)


def settle(
    board: jax.Array, runs: jax.Array, seed: jax.Array, n_types: int, first_round: jax.Array, max_tries: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Re-draw the cells of any run in place (no score) and reshuffle a board that has no valid
    swap, until the board has no run and a valid swap, or `max_tries` rounds have passed.
    Rounds are numbered on from `first_round`, so their draws differ from the cascade's.

    board: int32[rows, cols]; runs: bool[rows, cols] -> (board, mask bool[num_actions], ok bool[]).
    """

    def unsettled(_, carry):
        _, runs, mask, tries = carry
        return (jnp.any(runs) | ~jnp.any(mask)) & (tries < max_tries)

    def one_round(operands, carry):
        seed, first_round = operands
        board, runs, _, tries = carry
        draw = first_round + tries
        new_tiles = chance.cell_ints(seed, 2 * draw, board.shape, n_types).astype(board.dtype)
        redrawn = jnp.where(runs, new_tiles, board)
        board = jnp.where(jnp.any(runs), redrawn, reshuffle(board, seed, 2 * draw + 1))
        return board, find_runs(board), legal_mask(board), tries + 1

    init = (board, runs, legal_mask(board), jnp.zeros((), jnp.int32))
    board, runs, mask, _ = loops.while_loop(unsettled, one_round, init, (seed, first_round))
    return board, mask, ~jnp.any(runs) & jnp.any(mask)


def reshuffle(board: jax.Array, seed: jax.Array, draw: jax.Array) -> jax.Array:
    """int32[rows, cols]: the same tiles in a random new arrangement.

    A cheap mixing permutation rather than a uniform one (a sort per board cost more than the
    rest of the step): each row is rotated by its own random amount, then each column, then the
    flat cell order is remapped by a random affine map i -> (a*i + b) mod n with a coprime to n.
    """
    rows, cols = board.shape
    n = rows * cols
    bits = chance.cell_bits(seed, draw, (rows + cols + 2,))
    row_shift = (bits[:rows] % cols).astype(jnp.int32)
    col_shift = (bits[rows : rows + cols] % rows).astype(jnp.int32)
    r, c = jnp.indices((rows, cols))
    board = board[r, (c + row_shift[:, None]) % cols]
    board = board[(r + col_shift[None, :]) % rows, c]
    units = jnp.asarray([a for a in range(1, n) if math.gcd(a, n) == 1], jnp.int32)
    a = units[bits[-2] % units.shape[0]]
    b = (bits[-1] % n).astype(jnp.int32)
    return board.ravel()[(a * jnp.arange(n) + b) % n].reshape(rows, cols)


@functools.lru_cache(maxsize=None)
def _fallback_board(rows: int, cols: int, n_types: int) -> np.ndarray | None:
    """A settled board with a valid swap for this size, found once on the host (None if no
    search succeeds). Boards whose own re-dealing runs out of tries get this one instead."""

    @jax.jit
    def search(seed):
        board = chance.cell_ints(seed, 0, (rows, cols), n_types)
        board, _, ok = settle(board, find_runs(board), seed + 1, n_types, jnp.int32(0), 2000)
        return board, ok

    for seed in range(8):
        board, ok = search(jnp.uint32(seed))
        if bool(ok):
            return np.asarray(board)
    return None


@functools.lru_cache(maxsize=None)
def _fallback(rows: int, cols: int, n_types: int) -> tuple[np.ndarray, np.ndarray]:
    """The fallback board and its legal mask, as host constants for the traced step."""
    board = _fallback_board(rows, cols, n_types)
    with jax.ensure_compile_time_eval():  # may first be asked for while a step is traced
        return board, np.asarray(legal_mask(jnp.asarray(board)))


# ---- the game -------------------------------------------------------------------------------


@register(
    "swap",
    presets={
        "easy": dict(rows=4, cols=4, colours=2, shapes=2),
        "paper": dict(rows=8, cols=8, colours=4, shapes=3),
        "hard": dict(rows=10, cols=10, colours=6, shapes=4, palette="close"),
    },
)
@dataclasses.dataclass(frozen=True, kw_only=True)
class Swap(PairEnv):
    """Match-3 on a rows x cols board of colours x shapes tile types (module docstring).

    rows, cols:        board size (reasoning difficulty), 2..32 each, one of them >= 3.
    colours, shapes:   tile types = colours * shapes >= 2; at most 10 colours and 6 shapes.
    max_cascade_rounds: bound on clear-fall-refill rounds in one move; runs still left after
                       it are re-drawn without scoring.
    max_settle_tries:  bound on re-draw/reshuffle rounds; a board still unsettled after it is
                       replaced by a fixed settled board found when the env was made.
    palette:           "distinct" or "close" colours (perceptual difficulty, `jaxgym.tiles`).
    """

    rows: int = 8
    cols: int = 8
    colours: int = 4
    shapes: int = 3
    max_cascade_rounds: int = 32
    max_settle_tries: int = 64
    palette: str = "distinct"

    def validate(self) -> None:
        require(self.palette in tiles.PALETTES,
                f"swap: palette must be one of {sorted(tiles.PALETTES)}, got {self.palette!r}")
        for knob in ("rows", "cols", "colours", "shapes", "max_cascade_rounds", "max_settle_tries"):
            value = getattr(self, knob)
            require(isinstance(value, int) and not isinstance(value, bool),
                    f"swap: {knob} must be an int, got {value!r}")
        require(2 <= self.rows <= 32 and 2 <= self.cols <= 32,
                f"swap: rows and cols must be in [2, 32], got {self.rows}x{self.cols}")
        require(max(self.rows, self.cols) >= 3,
                f"swap: a {self.rows}x{self.cols} board cannot hold a run of 3; "
                "make rows or cols at least 3")
        require(1 <= self.colours <= tiles.MAX_COLOURS,
                f"swap: colours must be in [1, {tiles.MAX_COLOURS}], got {self.colours}")
        require(1 <= self.shapes <= tiles.MAX_SHAPES,
                f"swap: shapes must be in [1, {tiles.MAX_SHAPES}], got {self.shapes}")
        require(self.num_tile_types >= 2,
                f"swap: needs at least 2 tile types, got colours*shapes = {self.num_tile_types}; "
                "raise colours or shapes")
        require(self.max_cascade_rounds >= 1 and self.max_settle_tries >= 1,
                "swap: max_cascade_rounds and max_settle_tries must be >= 1")
        require(_fallback_board(self.rows, self.cols, self.num_tile_types) is not None,
                f"swap: could not deal a {self.rows}x{self.cols} board of {self.num_tile_types} "
                "tile types with no run of 3 and a valid swap; use a larger board or more types")

    # ---- sizes ----

    @property
    def board_shape(self) -> tuple[int, int]:
        return (self.rows, self.cols)

    @property
    def num_tile_types(self) -> int:
        return self.colours * self.shapes

    @property
    def num_actions(self) -> int:
        return self.rows * (self.cols - 1) + (self.rows - 1) * self.cols

    # ---- actions ----

    def encode_action(self, r1, c1, r2, c2) -> jax.Array:
        """int32[]: the action swapping (r1, c1) and (r2, c2), in either order; -1 if the two
        cells are not 4-neighbours on the board. At 8x8: (0, 1, 0, 2) -> 1, (1, 0, 0, 0) -> 56."""
        r1, c1, r2, c2 = (jnp.asarray(x, jnp.int32) for x in (r1, c1, r2, c2))
        on_board = all_of(
            (r >= 0) & (r < self.rows) & (c >= 0) & (c < self.cols) for r, c in ((r1, c1), (r2, c2))
        )
        top, left = jnp.minimum(r1, r2), jnp.minimum(c1, c2)
        horizontal = (r1 == r2) & (jnp.abs(c1 - c2) == 1)
        vertical = (c1 == c2) & (jnp.abs(r1 - r2) == 1)
        n_horizontal = self.rows * (self.cols - 1)
        action = jnp.where(horizontal, top * (self.cols - 1) + left, n_horizontal + top * self.cols + left)
        return jnp.where(on_board & (horizontal | vertical), action, INVALID_ACTION).astype(jnp.int32)

    def decode_action(self, action) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        """(r1, c1, r2, c2) int32 scalars of a swap, top-left cell first; all -1 when the
        action is out of range. At 8x8: 1 -> (0, 1, 0, 2), 56 -> (0, 0, 1, 0)."""
        action = jnp.asarray(action, jnp.int32)
        n_horizontal = self.rows * (self.cols - 1)
        horizontal = action < n_horizontal
        vertical_index = action - n_horizontal
        r1 = jnp.where(horizontal, action // max(self.cols - 1, 1), vertical_index // self.cols)
        c1 = jnp.where(horizontal, action % max(self.cols - 1, 1), vertical_index % self.cols)
        r2, c2 = r1 + ~horizontal, c1 + horizontal
        valid = (action >= 0) & (action < self.num_actions)
        return tuple(jnp.where(valid, x, INVALID_ACTION).astype(jnp.int32) for x in (r1, c1, r2, c2))

    # ---- dealing ----

    def _settle(self, board, runs, seed, first_round=0):
        """`settle` with this env's bound, falling back to the env's fixed settled board.
        Runs on int8 cells (`CELL`); the board comes back as int32."""
        board, mask, ok = settle(
            board.astype(CELL), runs, seed, self.num_tile_types, jnp.asarray(first_round, jnp.int32), self.max_settle_tries
        )
        fallback_board, fallback_mask = _fallback(self.rows, self.cols, self.num_tile_types)
        return jnp.where(ok, board.astype(jnp.int32), fallback_board), jnp.where(ok, mask, fallback_mask)

    def _deal(self, key: jax.Array):
        seed = chance.seed_from_key(key)
        board = chance.cell_ints(seed, 0, self.board_shape, self.num_tile_types)
        return self._settle(board, find_runs(board), seed + 1)

    def _check_board(self, board: np.ndarray) -> None:
        require(bool(np.all((board >= 0) & (board < self.num_tile_types))),
                f"swap: tile ids must be in [0, {self.num_tile_types}), got values "
                f"{sorted(set(board[(board < 0) | (board >= self.num_tile_types)].tolist()))}")
        runs = np.argwhere(np.asarray(find_runs(jnp.asarray(board, jnp.int32))))
        require(len(runs) == 0,
                f"swap: a hand-made board must be settled (no run of 3), but cell "
                f"{tuple(runs[0].tolist()) if len(runs) else ()} is in a run")

    def _settle_given(self, board: jax.Array, key: jax.Array):
        """A hand-made board without a valid swap is reshuffled, as after a move."""
        return self._settle(board, find_runs(board), chance.seed_from_key(key))

    # ---- a move, as named stages ----

    def _step(self, state: State, action: jax.Array) -> State:
        legal = is_legal(state.legal_action_mask, action)
        key, chance_key = jax.random.split(state.key)
        board = state.board.astype(CELL)
        swapped = jnp.where(legal, swap_tiles(board, *self.decode_action(action)), board)
        seed = chance.seed_from_key(chance_key)
        board, runs, score, rounds = cascade(swapped, seed, self.num_tile_types, self.max_cascade_rounds)
        board, mask = self._settle(board, runs, seed, first_round=rounds)
        return state.replace(
            board=board,
            key=key,
            reward=jnp.where(legal, score.astype(jnp.float32), -1.0),
            terminated=~jnp.any(mask),
            legal_action_mask=mask,
        )

    def expert_action(self, state: State) -> jax.Array:
        """The valid swap that removes the most cells in its first round (so scores the most
        before chance refills); ties go to the lowest action id."""
        return jnp.argmax(_gains(state.board.astype(CELL))).astype(jnp.int32)

    # ---- text and sprites ----

    verb = "Swap"

    def instructions(self) -> str:
        return (
            f"You are playing Swap, a match-3 puzzle on a {self.rows}x{self.cols} grid. Every "
            "cell holds a tile with a colour and a shape. Swap two horizontally or vertically "
            "adjacent tiles so that three or more identical tiles (same colour and same shape) "
            "line up in a row or a column; they are removed and score points. Cells are (row, "
            "column), 0-indexed from the top-left.\n"
            "First describe the board inside <perception></perception>: one line per row, cells "
            'named like "Red circle" and joined by " | ". Then reason inside <think></think>. '
            "Then give your move inside <answer></answer> as (row, column) (row, column), like "
            "(0, 1) (0, 2)."
        )

    def cell_names(self, board: np.ndarray) -> list[list[str]]:
        return tiles.board_names(board, self.colours, self.shapes, self.palette)

    def sprites(self) -> np.ndarray:
        """Tile type t = colour * shapes + shape is sprite t."""
        return sprites.shape_atlas(self.colours, self.shapes, self.tile_px, self.palette)


def swap_tiles(board: jax.Array, r1, c1, r2, c2) -> jax.Array:
    """int32[rows, cols]: the board with cells (r1, c1) and (r2, c2) exchanged."""
    rr, cc = jnp.indices(board.shape)
    first, second = (rr == r1) & (cc == c1), (rr == r2) & (cc == c2)
    return jnp.where(first, board[r2, c2], jnp.where(second, board[r1, c1], board))


def all_of(conditions) -> jax.Array:
    """Elementwise AND of an iterable of bool arrays."""
    return functools.reduce(jnp.logical_and, conditions)
