"""Shisen-Sho, the tile-matching game of VLM-Gym, and its image-tile variant, with the rules of
docs/DESIGN.md.

Board:   int32[rows, cols]; -1 is an empty cell. In `shisensho` a cell holds its tile type,
         colour * shapes + shape. In `shisensho-images` it holds an image,
         class * images_per_class + image, and the tile type is the class: the copies of a class
         show different images of it, and players match by class, not by pixels.
Action:  pick two different cells. Actions number the unordered pairs i < j of flat cell
         indices (i = row * cols + col) in order: (0, 1), (0, 2), ..., (1, 2), ..., so
         num_actions = n(n - 1) / 2 for n cells (10296 at 12x12).
Valid:   both cells hold tiles of the same type, and a path of at most three straight segments
         (at most two turns) joins them through empty cells; the path may leave the board and
         run through the one-cell ring around it.
Reward:  +1 for a valid pair (both tiles are removed), -1 for an invalid one (board unchanged).
End:     terminated when the board is empty or no valid pair is left.

The connection test is vectorised: for all pairs of cells at once, a path with at most two turns
is either (vertical, horizontal, vertical) through some row t of the padded board, or
(horizontal, vertical, horizontal) through some column u; straight lines and single turns are the
degenerate cases t = row of an end (or u = column of an end). With per-line prefix counts of
filled cells, "the segment is clear" is a subtraction; each cell's clear reach along its column
is a bitset over t, so "some t works" is an AND of bitsets per pair (`connected_pairs`).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxgym import images, loops, sprites, tiles
from jaxgym.core import (EMPTY, INVALID_ACTION, PairEnv, State, is_legal, random_legal_action,
                         register, require)

MAX_CELLS = 256  # 16 x 16: the pair mask then has 32,640 entries

# ---- the connection test --------------------------------------------------------------------


def _packed(filled: jax.Array) -> jax.Array:
    """uint32[lines]: bit t of line x set where filled[t, x]. filled: bool[size <= 32, lines]."""
    weights = jnp.left_shift(jnp.uint32(1), jnp.arange(filled.shape[0], dtype=jnp.uint32))
    return jnp.sum(jnp.where(filled, weights[:, None], jnp.uint32(0)), axis=0, dtype=jnp.uint32)


def _low_bits(size: int) -> np.uint32:
    return np.uint32((1 << size) - 1)


def _count_trailing_zeros(x: jax.Array) -> jax.Array:
    """uint32: trailing zero bits of a non-zero uint32."""
    return jnp.uint32(31) - jax.lax.clz(x & (~x + jnp.uint32(1)))


def _run_through(empty: jax.Array, start: jax.Array) -> jax.Array:
    """uint32: the run of set bits of `empty` that holds bit `start` (taken as set), as a
    bitset: the positions along a line that a straight segment from `start` reaches.

    empty=0b1101101, start=3 -> 0b0001100 (bit 3 itself, bit 2; bit 1 is filled)
    """
    one = jnp.uint32(1)
    line = empty | (one << start)
    up = ((one << _count_trailing_zeros(~(line >> start))) - one) << start
    to_start = (one << (start + one)) - one
    holes = ~line & to_start
    last_hole = jnp.uint32(31) - jax.lax.clz(holes)
    down = jnp.where(holes != 0, to_start & ~((one << (last_hole + one)) - one), to_start)
    return up | down


def _gaps(line_bits: jax.Array, n: int) -> jax.Array:
    """uint32[n, n]: bit t set where no line x strictly between p and q has bit t
    (line_bits: uint32[n], one bitset per board line)."""
    x = jnp.arange(n)
    p, q = x[:, None, None], x[None, :, None]
    inside = (jnp.minimum(p, q) < x) & (x < jnp.maximum(p, q))
    between = jax.lax.reduce(jnp.where(inside, line_bits, jnp.uint32(0)), jnp.uint32(0),
                             jax.lax.bitwise_or, (2,))
    return ~between


def line_bitsets(filled: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """The bitsets the connection test ANDs, over the board padded with its empty ring
    (bits number padded rows, or padded columns), for filled: bool[rows, cols]:

    down:    uint32[n]: padded rows a straight vertical segment from each cell reaches;
    across:  uint32[n]: padded columns a horizontal segment from each cell reaches;
    row_gap: uint32[cols, cols]: padded rows along which the cells strictly between
             columns p and q are empty;
    col_gap: uint32[rows, rows]: the same for columns between rows p and q.
    A few shifts and bit counts per cell, no gathers.
    """
    rows, cols = filled.shape
    padded = jnp.pad(filled, 1)
    col_bits, row_bits = _packed(padded)[1:-1], _packed(padded.T)[1:-1]  # [cols], [rows]
    r, c = jnp.indices((rows, cols), dtype=jnp.uint32)
    down = _run_through(~col_bits[None, :] & _low_bits(rows + 2), r + 1).ravel()
    across = _run_through(~row_bits[:, None] & _low_bits(cols + 2), c + 1).ravel()
    row_gap = _gaps(col_bits, cols) & _low_bits(rows + 2)
    col_gap = _gaps(row_bits, rows) & _low_bits(cols + 2)
    return down, across, row_gap, col_gap


@functools.lru_cache(maxsize=None)
def pair_cells(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The cells of every action: int32[n(n-1)/2] first (lower) and second flat cell indices."""
    first, second = np.triu_indices(n, 1)
    return first.astype(np.int32), second.astype(np.int32)


def upper_pairs(matrix: jax.Array) -> jax.Array:
    """[n(n-1)/2]: the entries (i, j), i < j, of an [n, n] matrix in action order."""
    n = matrix.shape[0]
    first, second = pair_cells(n)
    return matrix.ravel()[first * n + second]


def pair_action(i: jax.Array, j: jax.Array, n: int) -> jax.Array:
    """int32: the action of the pair of different flat cells i, j (either order) of n cells."""
    first, second = jnp.minimum(i, j), jnp.maximum(i, j)
    return first * n - first * (first + 1) // 2 + (second - first - 1)


def _joined(down, across, row_gap, col_gap, other_col, other_row) -> jax.Array:
    """bool: a path joins two cells, given (a, b) pairs of their reach bitsets and the gaps
    between them (`line_bitsets`): vertical-horizontal-vertical through some row, or
    horizontal-vertical-horizontal through some column."""
    via_row = (down[0] & down[1] & row_gap) != 0
    via_col = (across[0] & across[1] & col_gap) != 0
    return (via_row & other_col) | (via_col & other_row)


def connections(filled: jax.Array) -> jax.Array:
    """bool[n, n] over the n = rows * cols cells (row-major): a path of at most three straight
    segments joins the two different cells, through empty cells and the ring outside the
    board. The contents of the two end cells themselves do not matter.

    filled: bool[rows, cols]. "Some row t works for both ends and row t is clear between
    their columns" is one AND of three bitsets per pair (`line_bitsets`), all by broadcasting.
    """
    rows, cols = filled.shape
    n = rows * cols
    down, across, row_gap, col_gap = line_bitsets(filled)
    # [n, n] as [rows_a, cols_a, rows_b, cols_b]
    row_gap = jnp.broadcast_to(row_gap[None, :, None, :], (rows, cols, rows, cols)).reshape(n, n)
    col_gap = jnp.broadcast_to(col_gap[:, None, :, None], (rows, cols, rows, cols)).reshape(n, n)
    other_col = np.not_equal.outer(np.tile(np.arange(cols), rows), np.tile(np.arange(cols), rows))
    other_row = np.not_equal.outer(np.repeat(np.arange(rows), cols), np.repeat(np.arange(rows), cols))
    return _joined((down[:, None], down[None, :]), (across[:, None], across[None, :]),
                   row_gap, col_gap, other_col, other_row)


def connected_pairs(filled: jax.Array) -> jax.Array:
    """bool[num_actions]: `connections` for every pair of different cells, in action order."""
    return upper_pairs(connections(filled))


def legal_mask(types: jax.Array, copies: int) -> jax.Array:
    """bool[num_actions]: pairs of different cells holding the same type, joined by a path.
    types: int32[rows, cols], -1 empty."""
    return legal_pairs(types, copies)[0]


def legal_pairs(types: jax.Array, copies: int) -> tuple[jax.Array, jax.Array]:
    """(`legal_mask`, bool[]: some pair is legal), the second without a pass over the mask.

    Only same-type pairs can be legal, so only they are tested: the cells sorted by type put
    each type's tiles side by side, and while no type is on more than `copies` cells every
    pair of them is k and k + d in that order for some d < copies (copies * n pairs tested,
    not n(n - 1) / 2). A hand-made board with more (walls of one type) takes `all_pairs_mask`.
    """
    rows, cols = types.shape
    n = rows * cols
    down, across, row_gap, col_gap = line_bitsets(types >= 0)
    order = jnp.sort(types.ravel() * n + jnp.arange(n))  # by type, then cell
    cell, kind = order % n, jnp.where(order >= 0, order // n, -1)
    row, col = cell // cols, cell % cols
    down, across = down[cell], across[cell]
    legal, actions = [], []
    for d in range(1, min(copies, n)):
        a, b = slice(None, -d), slice(d, None)
        joined = _joined((down[a], down[b]), (across[a], across[b]), row_gap[col[a], col[b]],
                         col_gap[row[a], row[b]], col[a] != col[b], row[a] != row[b])
        legal.append((kind[a] == kind[b]) & (kind[a] >= 0) & joined)
        actions.append(jnp.where(legal[-1], pair_action(cell[a], cell[b], n), n * (n - 1) // 2))
    mask = jnp.zeros(n * (n - 1) // 2, bool).at[jnp.concatenate(actions)].set(True, mode="drop")
    some = jnp.any(jnp.concatenate(legal))
    if copies >= n:
        return mask, some
    crowded = jnp.any((kind[:-copies] == kind[copies:]) & (kind[:-copies] >= 0))
    return loops.select_rarely(crowded, _all_pairs_and_any, types, (mask, some))


def _all_pairs_and_any(types: jax.Array) -> tuple[jax.Array, jax.Array]:
    mask = all_pairs_mask(types)
    return mask, jnp.any(mask)


def all_pairs_mask(types: jax.Array) -> jax.Array:
    """`legal_mask` by testing every pair of cells: for boards of any type counts."""
    flat = types.ravel()
    same = (flat[:, None] == flat[None, :]) & (flat[:, None] >= 0)
    return upper_pairs(same & connections(types >= 0))


# ---- dealing --------------------------------------------------------------------------------


def place_pair(board: jax.Array, cells: tuple[jax.Array, jax.Array], pair_tiles: jax.Array) -> jax.Array:
    """int32[rows, cols]: `board` with flat cells `cells` set to `pair_tiles` (int32[2])."""
    flat = board.ravel()
    flat = flat.at[cells[0]].set(pair_tiles[0]).at[cells[1]].set(pair_tiles[1])
    return flat.reshape(board.shape)


def deal_random(deck: jax.Array, key: jax.Array, shape: tuple[int, int]) -> jax.Array:
    """int32[rows, cols]: the tiles of `deck` (int32[pairs, 2]) in a uniformly random order."""
    return jax.random.permutation(key, deck.ravel()).reshape(shape)


def deal_solvable(deck: jax.Array, key: jax.Array, shape: tuple[int, int]) -> tuple[jax.Array, jax.Array]:
    """A board that can be cleared completely, built backwards: (int32[rows, cols], ok bool[]).

    Pairs are placed from the last one removed to the first: each goes on two empty cells
    that a path joins through the cells still empty (which are exactly the cells whose tiles
    the forward game removes before it), chosen uniformly among such pairs. Removing the pairs
    in the reverse order of placement then clears the board. `ok` is False if at some point no
    two empty cells could be joined (rare; the caller deals again).
    """
    first, second = pair_cells(shape[0] * shape[1])

    def place(k, carry):
        board, ok = carry
        empty = (board < 0).ravel()
        candidates = connected_pairs(board >= 0) & empty[first] & empty[second]
        pick = jnp.maximum(random_legal_action(jax.random.fold_in(key, k), candidates), 0)
        cells = (jnp.asarray(first)[pick], jnp.asarray(second)[pick])
        return place_pair(board, cells, deck[k]), ok & jnp.any(candidates)

    empty_board = jnp.full(shape, -1, jnp.int32)
    return jax.lax.fori_loop(0, deck.shape[0], place, (empty_board, jnp.ones((), bool)))


# ---- the games ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class _ShisenShoRules(PairEnv):
    """The rules both variants share; a variant says how tiles map to types and deals its deck."""

    rows: int = 12
    cols: int = 12
    copies: int = 4
    solvable: bool = False
    max_deal_tries: int = 16

    # ---- what a variant adds ----

    @property
    def num_types(self) -> int:
        raise NotImplementedError

    def tile_types(self, board: jax.Array) -> jax.Array:
        """int32[rows, cols]: the matching type of each cell, -1 where empty."""
        raise NotImplementedError

    def _deck(self, key: jax.Array) -> jax.Array:
        """int32[pairs, 2]: the tiles to deal, two of one type per row, rows in random order."""
        raise NotImplementedError

    verb = "Join"

    # ---- validation and sizes ----

    def _validate_layout(self, type_word: str) -> None:
        name = self.name
        for knob in ("rows", "cols", "copies", "max_deal_tries"):
            value = getattr(self, knob)
            require(isinstance(value, int) and not isinstance(value, bool),
                    f"{name}: {knob} must be an int, got {value!r}")
        require(isinstance(self.solvable, bool), f"{name}: solvable must be True or False")
        require(1 <= self.rows <= 30 and 1 <= self.cols <= 30 and 2 <= self.rows * self.cols <= MAX_CELLS,
                f"{name}: rows and cols must be in [1, 30] with 2 to {MAX_CELLS} cells, "
                f"got {self.rows}x{self.cols}")
        require(self.copies >= 2 and self.copies % 2 == 0,
                f"{name}: copies per {type_word} must be even and >= 2 (tiles go in pairs), got {self.copies}")
        cells = self.rows * self.cols
        require(cells == self.num_types * self.copies,
                f"{name}: a {self.rows}x{self.cols} board has {cells} cells, but {self.num_types} "
                f"{type_word}s x {self.copies} copies = {self.num_types * self.copies} tiles; "
                "change the board size, the number of types or the copies so they match")
        require(self.max_deal_tries >= 1, f"{name}: max_deal_tries must be >= 1")

    @property
    def board_shape(self) -> tuple[int, int]:
        return (self.rows, self.cols)

    @property
    def num_actions(self) -> int:
        n = self.rows * self.cols
        return n * (n - 1) // 2

    # ---- actions ----

    def encode_action(self, r1, c1, r2, c2) -> jax.Array:
        """int32[]: the action picking cells (r1, c1) and (r2, c2), in either order; -1 if a cell
        is off the board or both are the same cell. At 12x12: (0, 0, 0, 1) -> 0, (0, 1, 0, 0) -> 0."""
        r1, c1, r2, c2 = (jnp.asarray(x, jnp.int32) for x in (r1, c1, r2, c2))
        on_board = jnp.all(jnp.stack([(r >= 0) & (r < self.rows) & (c >= 0) & (c < self.cols)
                                      for r, c in ((r1, c1), (r2, c2))]))
        a, b = r1 * self.cols + c1, r2 * self.cols + c2
        action = pair_action(a, b, self.rows * self.cols)
        return jnp.where(on_board & (a != b), action, INVALID_ACTION).astype(jnp.int32)

    def decode_action(self, action) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        """(r1, c1, r2, c2) int32 scalars, the lower flat cell first; all -1 when the action is
        out of range."""
        action = jnp.asarray(action, jnp.int32)
        first, second = pair_cells(self.rows * self.cols)
        index = jnp.clip(action, 0, self.num_actions - 1)
        a, b = jnp.asarray(first)[index], jnp.asarray(second)[index]
        cells = (a // self.cols, a % self.cols, b // self.cols, b % self.cols)
        valid = (action >= 0) & (action < self.num_actions)
        return tuple(jnp.where(valid, x, INVALID_ACTION).astype(jnp.int32) for x in cells)

    # ---- dealing ----

    def _deal(self, key: jax.Array):
        """Deal until the board has a valid pair (random) or is clearable (`solvable`), at most
        `max_deal_tries` times; a solvable deal that keeps failing falls back to a random one."""

        def attempt(tries):
            deck_key, layout_key = jax.random.split(jax.random.fold_in(key, tries))
            deck = self._deck(deck_key)
            if self.solvable:
                board, ok = deal_solvable(deck, layout_key, self.board_shape)
                board = jnp.where(ok, board, deal_random(deck, layout_key, self.board_shape))
            else:
                board = deal_random(deck, layout_key, self.board_shape)
            return board, legal_mask(self.tile_types(board), self.copies)

        def unplayable(carry):
            _, mask, tries = carry
            return ~jnp.any(mask) & (tries < self.max_deal_tries)

        def again(carry):
            *_, tries = carry
            return (*attempt(tries), tries + 1)

        # Start from an "unplayable" empty board so that `attempt` is traced once, in the loop.
        empty = jnp.full(self.board_shape, -1, jnp.int32)
        init = (empty, jnp.zeros(self.num_actions, bool), jnp.zeros((), jnp.int32))
        board, mask, _ = jax.lax.while_loop(unplayable, again, init)
        return board, mask

    def _settle_given(self, board: jax.Array, key: jax.Array):
        return board, legal_mask(self.tile_types(board), self.copies)

    def _check_board(self, board: np.ndarray) -> None:
        top = self.num_tile_types
        bad = board[(board < -1) | (board >= top)]
        require(bad.size == 0,
                f"{self.name}: cells must be -1 (empty) or tile values in [0, {top}), "
                f"got {sorted(set(bad.tolist()))[:8]}")

    # ---- a move ----

    def _step(self, state: State, action: jax.Array) -> State:
        legal = is_legal(state.legal_action_mask, action)
        r1, c1, r2, c2 = self.decode_action(action)
        rr, cc = jnp.indices(self.board_shape)
        picked = ((rr == r1) & (cc == c1)) | ((rr == r2) & (cc == c2))
        board = jnp.where(legal & picked, -1, state.board)
        mask, some = legal_pairs(self.tile_types(board), self.copies)
        return state.replace(
            board=board,
            reward=jnp.where(legal, 1.0, -1.0).astype(jnp.float32),
            terminated=~some,
            legal_action_mask=mask,
        )

    def expert_action(self, state: State) -> jax.Array:
        """A valid pair, preferring a type's last two tiles (removing them can never block
        another match), then the lowest action id. Every valid pair scores the same +1, so this
        is a best one-step move that also avoids some dead ends."""
        types = self.tile_types(state.board).ravel()
        counts = jnp.sum(types[:, None] == jnp.arange(self.num_types)[None, :], axis=0)
        last_two = counts[jnp.clip(types, 0)] == 2
        first, _ = pair_cells(types.size)
        score = state.legal_action_mask * (1 + last_two[first])
        return jnp.argmax(score).astype(jnp.int32)


@register(
    "shisensho",
    presets={
        "easy": dict(rows=4, cols=4, colours=2, shapes=2, solvable=True),
        "paper": dict(rows=12, cols=12, colours=6, shapes=6),
        "hard": dict(rows=12, cols=16, colours=8, shapes=6, palette="close"),
    },
)
@dataclasses.dataclass(frozen=True, kw_only=True)
class ShisenSho(_ShisenShoRules):
    """Shisen-Sho with coloured-shape tiles (module docstring).

    rows, cols:       board size; rows * cols must equal colours * shapes * copies.
    colours, shapes:  tile types = colours * shapes (at most 10 colours, 6 shapes).
    copies:           tiles of each type, even (default 4).
    solvable:         deal only boards that can be cleared completely (`deal_solvable`).
    palette:          "distinct" or "close" colours (perceptual difficulty).
    max_deal_tries:   deals tried for a board with a valid pair (or a clearable one).
    """

    colours: int = 6
    shapes: int = 6
    palette: str = "distinct"

    def validate(self) -> None:
        require(isinstance(self.colours, int) and 1 <= self.colours <= tiles.MAX_COLOURS,
                f"shisensho: colours must be an int in [1, {tiles.MAX_COLOURS}], got {self.colours!r}")
        require(isinstance(self.shapes, int) and 1 <= self.shapes <= tiles.MAX_SHAPES,
                f"shisensho: shapes must be an int in [1, {tiles.MAX_SHAPES}], got {self.shapes!r}")
        require(self.palette in tiles.PALETTES,
                f"shisensho: palette must be one of {sorted(tiles.PALETTES)}, got {self.palette!r}")
        self._validate_layout("type")

    @property
    def num_types(self) -> int:
        return self.colours * self.shapes

    @property
    def num_tile_types(self) -> int:
        return self.num_types

    def tile_types(self, board: jax.Array) -> jax.Array:
        return board

    def _deck(self, key: jax.Array) -> jax.Array:
        pair_type = np.repeat(np.arange(self.num_types, dtype=np.int32), self.copies // 2)
        deck = jnp.stack([pair_type, pair_type], axis=1)
        return jax.random.permutation(key, deck)

    # ---- text and sprites ----

    def instructions(self) -> str:
        return (
            f"You are playing Shisen-Sho on a {self.rows}x{self.cols} grid. Every cell holds a "
            "tile with a colour and a shape, or is empty. Pick two identical tiles (same colour "
            "and same shape) that can be joined by a path of at most three straight lines (at "
            "most two turns) through empty cells; the path may go around the outside of the "
            "board. Both tiles are removed. Cells are (row, column), 0-indexed from the "
            "top-left.\n"
            "First describe the board inside <perception></perception>: one line per row, cells "
            f'named like "Red circle", empty cells as "{EMPTY}", joined by " | ". Then reason '
            "inside <think></think>. Then give your pair inside <answer></answer> as (row, "
            "column) (row, column), like (0, 1) (0, 2)."
        )

    def cell_names(self, board: np.ndarray) -> list[list[str]]:
        return tiles.board_names(board, self.colours, self.shapes, self.palette)

    def sprites(self) -> np.ndarray:
        """Tile type t = colour * shapes + shape is sprite t."""
        return sprites.shape_atlas(self.colours, self.shapes, self.tile_px, self.palette)


@register(
    "shisensho-images",
    presets={
        "easy": dict(rows=4, cols=4, classes=4, solvable=True),
        "paper": dict(rows=6, cols=6, classes=9),
        "hard": dict(rows=6, cols=10, classes=10, copies=6, tile_px=24),
    },
)
@dataclasses.dataclass(frozen=True, kw_only=True)
class ShisenShoImages(_ShisenShoRules):
    """Shisen-Sho whose tile types are image classes (module docstring). The paper's board:
    6x6, 9 classes x 4 copies.

    classes:           image classes in play (the first ones of the source).
    images_per_class:  different images of a class that can appear; each deal shows `copies`
                       distinct ones of them per class (more images: more to recognise).
    image_source:      "digits" (handwritten digits bundled with the package) or the path of a
                       local CIFAR-10 folder (python pickle batches); see `jaxgym.images`.
    """

    rows: int = 6
    cols: int = 6
    classes: int = 9
    images_per_class: int = 8
    image_source: str = "digits"

    def validate(self) -> None:
        require(isinstance(self.classes, int) and self.classes >= 1,
                f"shisensho-images: classes must be an int >= 1, got {self.classes!r}")
        require(isinstance(self.images_per_class, int) and self.images_per_class >= 1,
                f"shisensho-images: images_per_class must be an int >= 1, got {self.images_per_class!r}")
        self._validate_layout("class")
        require(self.images_per_class >= self.copies,
                f"shisensho-images: each class shows {self.copies} different images, so "
                f"images_per_class must be >= copies, got {self.images_per_class}")
        source = self.source  # raises ValueError for a bad source
        require(self.classes <= len(source.class_names),
                f"shisensho-images: the image source {self.image_source!r} has "
                f"{len(source.class_names)} classes, fewer than classes={self.classes}")

    @property
    def source(self) -> images.ImageSource:
        """The images and class names (loaded once per source and size)."""
        return images.load(self.image_source, self.images_per_class)

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.source.class_names[: self.classes])

    @property
    def num_types(self) -> int:
        return self.classes

    @property
    def num_tile_types(self) -> int:
        return self.classes * self.images_per_class

    def tile_types(self, board: jax.Array) -> jax.Array:
        return jnp.where(board >= 0, board // self.images_per_class, -1)

    def _deck(self, key: jax.Array) -> jax.Array:
        shown_key, order_key = jax.random.split(key)
        # Each class shows `copies` distinct images, drawn without replacement.
        noise = jax.random.uniform(shown_key, (self.classes, self.images_per_class))
        shown = jnp.argsort(noise, axis=1)[:, : self.copies].astype(jnp.int32)
        values = jnp.arange(self.classes, dtype=jnp.int32)[:, None] * self.images_per_class + shown
        return jax.random.permutation(order_key, values.reshape(-1, 2))

    # ---- text and sprites ----

    def instructions(self) -> str:
        classes = ", ".join(self.class_names)
        return (
            f"You are playing Shisen-Sho with pictures on a {self.rows}x{self.cols} grid. Every "
            f"cell shows a picture of one of these classes: {classes}; or is empty. Pick two "
            "pictures of the same class (they may be different pictures) that can be joined by "
            "a path of at most three straight lines (at most two turns) through empty cells; the "
            "path may go around the outside of the board. Both are removed. Cells are (row, "
            "column), 0-indexed from the top-left.\n"
            "First describe the board inside <perception></perception>: one line per row, each "
            f'cell named by its class, empty cells as "{EMPTY}", joined by " | ". Then reason '
            "inside <think></think>. Then give your pair inside <answer></answer> as (row, "
            "column) (row, column), like (0, 1) (0, 2)."
        )

    def cell_names(self, board: np.ndarray) -> list[list[str]]:
        names = self.class_names
        return [[names[t // self.images_per_class] if t >= 0 else EMPTY for t in row]
                for row in board]

    def sprites(self) -> np.ndarray:
        """Sprite class * images_per_class + i is image i of the class; the empty cell last."""
        return images.image_atlas(self.image_source, self.classes, self.images_per_class,
                                  self.tile_px)
