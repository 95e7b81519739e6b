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
import functools
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from jaxgym import chance, sprites
from jaxgym.core import EMPTY, Env, State, is_legal, register, require

UP, RIGHT, DOWN, LEFT = 0, 1, 2, 3
DIRECTIONS = ("up", "right", "down", "left")  # the names of actions 0..3
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


# ---- sprites --------------------------------------------------------------------------------
# Sprite k is the tile 2**k, a rounded square in the classic 2048 colour of its value with the
# number written in the middle. Colours follow the original game: light beige for 2 and 4,
# oranges and reds up to 64, yellows up to 2048, then dark tiles (a few alternating dark hues,
# so neighbouring values differ in colour too). Numbers up to 7 digits (2**23 = 8388608) are
# written out, shrunk to fit the tile; larger ones as 2 with the exponent raised ("2" and a
# small "24"). Drawn with PIL at SPRITE_SUPERSAMPLE times the size and box-filtered down
# (anti-aliased), over the shared empty cell, so tiles keep the grid line.

SPRITE_SUPERSAMPLE = 4
LONGEST_WRITTEN_OUT = 7  # digits; longer numbers are drawn as 2 and a raised exponent

DARK_TEXT = (96, 88, 80)  # the original 2 and 4 text (119, 110, 101), darkened
LIGHT_TEXT = (249, 246, 242)
TILE_RGB = {  # exponent -> tile colour (the original game's palette)
    1: (238, 228, 218),
    2: (237, 224, 200),
    3: (242, 177, 121),
    4: (245, 149, 99),
    5: (246, 124, 95),
    6: (246, 94, 59),
    7: (237, 207, 114),
    8: (237, 204, 97),
    9: (237, 200, 80),
    10: (237, 197, 63),
    11: (237, 194, 46),
}
BEYOND_RGB = ((60, 58, 50), (38, 62, 92), (84, 44, 76), (30, 78, 70))  # 4096 and up, in turn


def _luminance(rgb: tuple[int, int, int]) -> float:
    """Relative luminance (WCAG) of an sRGB colour, 0 black .. 1 white."""
    linear = [(c / 255) / 12.92 if c <= 10 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in rgb]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def tile_colours(k: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(tile, text) RGB of the tile 2**k: `tile_colours(1) == ((238, 228, 218), DARK_TEXT)`.
    The text is whichever of DARK_TEXT and LIGHT_TEXT contrasts more with the tile (the
    original game writes white on its yellows, which is hard to read)."""
    tile = TILE_RGB.get(k, BEYOND_RGB[(k - 12) % len(BEYOND_RGB)])
    contrast = lambda text: (max(_luminance(tile), _luminance(text)) + 0.05) / (
        min(_luminance(tile), _luminance(text)) + 0.05)
    return tile, max((DARK_TEXT, LIGHT_TEXT), key=contrast)


def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=max(size, 1))


def _fitted_font(label: str, room: float, largest: int) -> ImageFont.FreeTypeFont:
    """The largest font, at most `largest` px, in which `label` is at most `room` px wide."""
    size = largest
    while size > 1 and _font(size).getlength(label) > room:
        size -= 1
    return _font(size)


def _draw_label(draw: ImageDraw.ImageDraw, k: int, side: int, rgb: tuple[int, int, int]) -> None:
    """Write 2**k centred in a side x side square: the number, or 2 and a raised k. The
    strokes are thickened (the built-in font is light) by a stroke of 1/28 of the font size."""
    centre, room = side / 2, side * 0.84
    number = str(2**k)
    if len(number) <= LONGEST_WRITTEN_OUT:
        font = _fitted_font(number, room, round(side * 0.5))
        ink = dict(fill=rgb, stroke_width=round(font.size / 28), stroke_fill=rgb)
        draw.text((centre, centre), number, font=font, anchor="mm", **ink)
        return
    base = _fitted_font("2" + "0" * len(str(k)), room, round(side * 0.5))
    power = _font(round(base.size * 0.6))
    ink = dict(fill=rgb, stroke_width=round(power.size / 28), stroke_fill=rgb)
    base_width, power_width = base.getlength("2"), power.getlength(str(k))
    left = centre - (base_width + power_width) / 2
    draw.text((left, centre), "2", font=base, anchor="lm", **ink)
    draw.text((left + base_width, centre - base.size * 0.3), str(k), font=power, anchor="lm", **ink)


def number_sprite(k: int, px: int) -> np.ndarray:
    """uint8[px, px, 3]: the tile 2**k on an empty cell."""
    side = px * SPRITE_SUPERSAMPLE
    tile_rgb, text_rgb = tile_colours(k)
    layer = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    inset, radius = round(side * 0.06), round(side * 0.12)
    edge = tuple(round(c * 0.8) for c in tile_rgb)
    draw.rounded_rectangle(
        (inset, inset, side - 1 - inset, side - 1 - inset), radius=radius,
        fill=tile_rgb + (255,), outline=edge + (255,), width=SPRITE_SUPERSAMPLE,
    )
    _draw_label(draw, k, side, text_rgb + (255,))
    layer = layer.resize((px, px), Image.Resampling.BOX)
    cell = Image.fromarray(sprites.blank_cell(px)).convert("RGBA")
    return np.asarray(Image.alpha_composite(cell, layer).convert("RGB"))


@functools.lru_cache(maxsize=32)
def number_atlas(largest: int, px: int) -> np.ndarray:
    """uint8[largest + 2, px, px, 3]: the empty cell, the tiles 2**1 .. 2**largest, and the
    empty cell again last (the renderer's sprite for negative values)."""
    empty = sprites.blank_cell(px)
    return np.stack([empty] + [number_sprite(k, px) for k in range(1, largest + 1)] + [empty])


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
    paper_warm_up: ClassVar[int] = 100  # the paper evaluates 2048 after 100 random moves

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

    # ---- text and sprites ----

    cell_separator = "|"

    def instructions(self) -> str:
        return (
            f"You are playing 2048 on a {self.size}x{self.size} grid. Each tile shows a power of "
            "two. A move slides every tile as far as it can in one direction; two tiles of the "
            "same value that meet merge to one tile of their sum (once per move), and the merged "
            "values are your score. A move that changes nothing is not allowed. After every "
            "valid move a new 2 or 4 appears on an empty cell.\n"
            "First describe the board inside <perception></perception>: one line per row, cells "
            f'written as their number, "{EMPTY}" for an empty cell, joined by "|" (like '
            f"2|{EMPTY}|4|{EMPTY}). Then reason inside <think></think>. Then give your move "
            "inside <answer></answer> as one digit: 0 up, 1 right, 2 down, 3 left."
        )

    def cell_names(self, board: np.ndarray) -> list[list[str]]:
        return [[str(2 ** int(k)) if k > 0 else EMPTY for k in row] for row in board]

    def rationale(self, board: np.ndarray, action: int) -> str:
        return f"Slide {DIRECTIONS[int(action)]}."

    def sprites(self) -> np.ndarray:
        """Board value k (an exponent) is sprite k: uint8[num_tile_types + 2, px, px, 3]."""
        return number_atlas(self.num_tile_types, self.tile_px)
