"""2048 (Gabriele Cirulli, 2014), as played in VLM-Gym (Chen et al. 2025, arXiv 2505.13426),
with the rules of docs/DESIGN.md.

Board:   int32[size, size] of exponents: 0 is an empty cell, k > 0 the tile 2**k.
Action:  0 up, 1 right, 2 down, 3 left (num_actions = 4): every tile slides as far as it can.
Merge:   two equal tiles that meet merge into one of twice the value, once per move, the pair
         nearest the wall first: [2 2 2 2] left -> [4 4 - -], [2 2 4 -] left -> [4 4 - -].
Valid:   the move changes the board.
Reward:  the sum of the values of the merged tiles ([2 2 2 2] left: 4 + 4 = 8); -1 if invalid
         (the board is then unchanged and nothing spawns). Computed as powers of two in
         float32, so every merged value is exact; a move's total is exact while it stays
         below 2**24, which holds for any move of a 4x4 game (at most 8 merges, each at most 2**17).
Chance:  after a valid move a 2 (p = 0.9) or a 4 (p = 0.1) appears on a uniformly random empty
         cell; a fresh board holds two such tiles.
End:     no move changes the board.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxgym import chance
from jaxgym.core import Env, State, is_legal, register, require

UP, RIGHT, DOWN, LEFT = 0, 1, 2, 3
MAX_HAND_EXPONENT = 30  # the largest exponent `from_board` accepts
FOUR_THRESHOLD = np.uint32(round(0.1 * 2**32))  # a spawn draw below this is a 4

# ---- sliding one way ------------------------------------------------------------------------


def power_of_two(k: jax.Array) -> jax.Array:
    """float32[...]: exactly 2**k for integer k in [0, 127], built from the float's bits
    (`exp2` is not guaranteed exact): [0 1 17] -> [1. 2. 131072.]."""
    return jax.lax.bitcast_convert_type((k + 127) << 23, jnp.float32)


# A slide works on a board's lines (its rows or columns), wall first, as a list of n vectors:
# cells[j] = int32[n] holds cell j (counted from the wall the tiles move to) of every line.
# All rules below are unrolled over j, a handful of selects per cell, with no sort or scatter.


def _cells(board: jax.Array, direction: int) -> list[jax.Array]:
    """The lines of `board` for a move in a static `direction`, as `cells[j]`: int32[n]."""
    lines = board.T if direction in (UP, DOWN) else board  # one line per row
    if direction in (RIGHT, DOWN):
        lines = lines[:, ::-1]
    return [lines[:, j] for j in range(lines.shape[1])]


def _board(cells: list[jax.Array], direction: int) -> jax.Array:
    """int32[n, n]: undoes `_cells`."""
    lines = jnp.stack(cells, axis=1)
    if direction in (RIGHT, DOWN):
        lines = lines[:, ::-1]
    return lines.T if direction in (UP, DOWN) else lines


def _shift_out(cells: list[jax.Array], j: int, where: jax.Array) -> list[jax.Array]:
    """Where `where`, drop cell j and move the cells after it one step toward the wall
    (an empty cell comes in at the far end): j = 1, [5 6 7 8] -> [5 7 8 0]."""
    later = cells[j + 1 :] + [jnp.zeros_like(cells[0])]
    return cells[:j] + [jnp.where(where, after, now) for now, after in zip(cells[j:], later)]


def pack(cells: list[jax.Array]) -> list[jax.Array]:
    """The tiles of every line moved to the wall, in order: [0 3 0 1] -> [3 1 0 0]. From the
    far end inwards, so the part after j is already packed when cell j is looked at."""
    for j in reversed(range(len(cells) - 1)):
        cells = _shift_out(cells, j, cells[j] == 0)
    return cells


def merge(cells: list[jax.Array]) -> tuple[list[jax.Array], jax.Array]:
    """Packed lines with equal neighbours merged, the pair nearest the wall first and each
    tile at most once: ([1 1 1 1] -> [2 2 0 0], merged value 4 + 4 per line: float32[n]).
    Going from the wall outwards, a merged tile is passed before the next pair is looked at."""
    merged = jnp.zeros(cells[0].shape, jnp.float32)
    for j in range(len(cells) - 1):
        pair = (cells[j] == cells[j + 1]) & (cells[j] > 0)
        merged = merged + jnp.where(pair, power_of_two(cells[j] + 1), 0.0)
        cells = _shift_out(cells, j + 1, pair)
        cells[j] = cells[j] + pair
    return cells, merged


def slide_cells(cells: list[jax.Array]) -> tuple[list[jax.Array], jax.Array]:
    """Lines slid to the wall, merging once: (cells, merged value float32[] over all lines)."""
    cells, merged = merge(pack(cells))
    return cells, jnp.sum(merged)


def slide_left(board: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Every row slid left, merging once: (int32[n, n], merged value float32[]).

    [[1 1 1 1]      [[2 2 0 0]
     [1 1 2 0]  ->   [2 2 0 0]      merged 4 + 4 + 4 = 12
     [0 2 0 3]]      [2 3 0 0]]
    """
    cells, merged = slide_cells(_cells(board, LEFT))
    return _board(cells, LEFT), merged


def slide(board: jax.Array, direction: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(int32[n, n], float32[]): the board slid in a traced `direction` (0 up .. 3 left).

    One slide, not four: the board is turned so that the move is a left slide (transposed for
    up and down, mirrored for right and down: two selects per cell), slid, and turned back.
    An out-of-range direction slides left.
    """
    across = (direction == UP) | (direction == DOWN)
    back = (direction == RIGHT) | (direction == DOWN)
    turned = jnp.where(across, board.T, board)
    turned = jnp.where(back, turned[:, ::-1], turned)
    slid, merged = slide_left(turned)
    slid = jnp.where(back, slid[:, ::-1], slid)
    return jnp.where(across, slid.T, slid), merged


def slide_all(board: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The board slid each way: (int32[4, n, n], float32[4]), in action order."""
    slides = [slide_cells(_cells(board, d)) for d in (UP, RIGHT, DOWN, LEFT)]
    boards = [_board(cells, d) for d, (cells, _) in zip((UP, RIGHT, DOWN, LEFT), slides)]
    return jnp.stack(boards), jnp.stack([merged for _, merged in slides])


# ---- legal moves ----------------------------------------------------------------------------


def legal_mask(board: jax.Array) -> jax.Array:
    """bool[4]: the moves that change the board, without sliding it. A move changes the board
    iff some tile has an empty cell or an equal tile next to it in the direction of motion.

    [[1 0]
     [2 0]]  ->  [F T F F]   (only right moves a tile; up/down meet no merge)
    """
    def moves(a, b):  # pairs (a, b) of cells, b the next one along the row/column
        merge = jnp.any((a > 0) & (a == b))
        return merge | jnp.any((a == 0) & (b > 0)), merge | jnp.any((a > 0) & (b == 0))

    left, right = moves(board[:, :-1], board[:, 1:])
    up, down = moves(board[:-1, :], board[1:, :])
    return jnp.stack([up, right, down, left])


# ---- chance ---------------------------------------------------------------------------------


def spawn(board: jax.Array, bits: jax.Array) -> jax.Array:
    """int32[n, n]: a 2 (exponent 1) or, when bits[1] < FOUR_THRESHOLD (p = 0.1), a 4 on a
    uniformly random empty cell; the board as it is if it has no empty cell.

    bits: uint32[2], two random words. The cell is the empty one with the largest hash of
    (bits[0], cell), its low 6 bits replaced by the cell number so that there are no ties:
    a few integer operations per cell, cheaper at large batches than counting the empty cells
    (a prefix sum) to pick the k-th.
    """
    cells = np.arange(board.size, dtype=np.uint32).reshape(board.shape)
    draw = (chance.cell_bits(bits[0], 0, board.shape) & jnp.uint32(~63 & 0xFFFFFFFF)) | cells
    draw = jnp.where(board == 0, draw, 0)
    chosen = (draw == jnp.max(draw)) & (board == 0)
    tile = jnp.where(bits[1] < FOUR_THRESHOLD, 2, 1)
    return jnp.where(chosen, tile, board)


# ---- the expert ----------------------------------------------------------------------------

EMPTY_WEIGHT = 10.0


def unsortedness(boards: jax.Array) -> jax.Array:
    """float32[...]: how far each row and column is from being monotone, in exponents: for a
    line, the smaller of its summed rises and its summed falls: [[3 2 1] [2 0 1] [1 0 3]] -> 1 for
    row 1 + 1 for row 2 = 2 (the columns are monotone). boards: int32[..., n, n]."""
    def along(axis):
        steps = jnp.diff(boards, axis=axis).astype(jnp.float32)
        rises = jnp.sum(jnp.maximum(steps, 0), axis=axis)
        falls = jnp.sum(jnp.maximum(-steps, 0), axis=axis)
        return jnp.sum(jnp.minimum(rises, falls), axis=-1)

    return along(-1) + along(-2)


def board_value(boards: jax.Array) -> jax.Array:
    """float32[...]: the expert's value of a position: EMPTY_WEIGHT per empty cell, minus
    `unsortedness`. boards: int32[..., n, n]."""
    return EMPTY_WEIGHT * jnp.sum(boards == 0, axis=(-1, -2)) - unsortedness(boards)


def expert_scores(board: jax.Array) -> jax.Array:
    """float32[4]: each move's value (illegal moves -inf): the best `board_value` reachable by
    one more move after it. Both moves are looked at without the spawn in between, so this is
    16 slides of the board, with no chance."""
    boards, _ = slide_all(board)
    after, _ = jax.vmap(slide_all)(boards)  # [first move, second move, n, n]
    second = jnp.where(jax.vmap(legal_mask)(boards), board_value(after), -1e9)  # finite: a legal
    # first move never loses to an illegal one, even if no second move followed
    return jnp.where(legal_mask(board), jnp.max(second, axis=1), -jnp.inf)


# ---- the game -------------------------------------------------------------------------------


@register(
    "2048",
    presets={
        "easy": dict(size=3),
        "paper": dict(size=4),
        "hard": dict(size=5, tile_px=40),
    },
)
@dataclasses.dataclass(frozen=True, kw_only=True)
class Twenty48(Env):
    """2048 on a size x size board (module docstring).

    size:     board side, 2..8 (the paper's is 4).
    tile_px:  pixels per cell; numbers are drawn in the cells, so the default is larger.
    """

    size: int = 4
    tile_px: int = 64

    def validate(self) -> None:
        require(isinstance(self.size, int) and not isinstance(self.size, bool),
                f"2048: size must be an int, got {self.size!r}")
        require(2 <= self.size <= 8, f"2048: size must be in [2, 8], got {self.size}")

    # ---- sizes ----

    @property
    def board_shape(self) -> tuple[int, int]:
        return (self.size, self.size)

    @property
    def num_actions(self) -> int:
        return 4

    @property
    def num_tile_types(self) -> int:
        """The largest exponent any position can reach, so that sprites and text cover every
        tile: a hand-made board holds exponents up to MAX_HAND_EXPONENT, and on n cells play
        raises the largest tile by at most n - 1 above max(M, 2), M the board's largest (a
        tile M + j needs j + 1 cells at once: M + j - 1, ..., M + 1 and two M). From a dealt
        board (M = 2) play reaches n + 1 (2**17 on 4x4)."""
        return MAX_HAND_EXPONENT + self.size * self.size - 1

    # ---- dealing ----

    def _deal(self, key: jax.Array):
        bits = jax.random.bits(key, (2, 2), jnp.uint32)
        board = spawn(spawn(jnp.zeros(self.board_shape, jnp.int32), bits[0]), bits[1])
        return board, legal_mask(board)

    def _check_board(self, board: np.ndarray) -> None:
        bad = board[(board < 0) | (board > MAX_HAND_EXPONENT)]
        require(bad.size == 0,
                f"2048: cells hold exponents in [0, {MAX_HAND_EXPONENT}] (0 empty, k the tile 2**k), "
                f"got {sorted(set(bad.tolist()))}")

    def _settle_given(self, board: jax.Array, key: jax.Array):
        """A hand-made board is played as it is (no spawn); one with no move is terminated."""
        return board, legal_mask(board)

    # ---- a move, as named stages ----

    def _step(self, state: State, action: jax.Array) -> State:
        legal = is_legal(state.legal_action_mask, action)
        key, chance_key = jax.random.split(state.key)
        moved, merged = slide(state.board, action)
        board = jnp.where(legal, spawn(moved, jax.random.bits(chance_key, (2,), jnp.uint32)), state.board)
        mask = legal_mask(board)
        return state.replace(
            board=board,
            key=key,
            reward=jnp.where(legal, merged, -1.0),
            terminated=~jnp.any(mask),
            legal_action_mask=mask,
        )

    def expert_action(self, state: State) -> jax.Array:
        """The legal move whose best follow-up (`expert_scores`) leaves the most empty cells
        and the most monotone rows and columns; ties go to the lowest action id. A cheap
        two-move lookahead without chance: over 64 4x4 games of 200 moves it scores about
        2.7 times as much as a random legal player."""
        return jnp.argmax(expert_scores(state.board)).astype(jnp.int32)
